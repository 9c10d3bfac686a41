"""Opt-in compiled CPU kernels for the fused recurrences (a C++ extension built on first use).

    import rnnkit.nn.cpu_kernels as cpu_kernels
    cpu_kernels.enable()        # compiles once (about a minute), then cached; raises if it cannot

What it does: in :mod:`rnnkit.nn.fused`, the (layer-normalised) LSTM's step does about a dozen
small ATen ops between the per-step matrix products (the layer norms, the gate activations, the
cell update). At small shapes each of them is a separate pass over memory that the matrix product
has just pushed out of cache, plus Python dispatch: 10-30 us each (measured). ``csrc/ln_lstm.cpp``
does all of it in one loop per batch row (vectorised with ATen's ``Vectorized``, rows split over
threads once a step has more than a few of them), forward and backward, and runs the time loop
itself: the same per-step products, masks and blends (zoneout, lengths) as the Python driver, in
the same order. With layer norm it also applies the input side's layer norm row by row. It serves
``rnnkit.LayerNormLSTM`` and ``rnnkit.FusedLSTM`` (CPU, float32/float64); the weight gradients
stay one matrix product each, as in ``fused.py``. ``tests/speed/test_cpu_kernels.py`` ties it to
the eager kernels, the readable loop and float64 gradcheck; ``benchmarks/custom_cells.py``
measures it.

Why opt-in: it needs a C++ compiler and ``ninja`` (``pip install ninja``) at run time, and the first
build takes about a minute (later processes load the cached build from PyTorch's extension folder,
``TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``). Nothing here is built unless you call
:func:`enable` or :func:`load`. The build targets the instruction set PyTorch itself picked for this
CPU (``torch.backends.cpu.get_cpu_capability()``: AVX512, AVX2, or portable code otherwise), and
falls back to the next one down if the compiler cannot build it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import ModuleType

import torch

_SOURCE = Path(__file__).with_name("csrc") / "ln_lstm.cpp"
_module: ModuleType | None = None

#: capability -> (compiler flags, the macros ATen's vec headers select their implementation by)
_ISA_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c",
               "-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"],
}


class CPUKernelsUnavailable(RuntimeError):
    """The C++ kernels cannot be built or loaded here (no compiler, no ninja, a build error)."""


def _capability() -> str:
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return "DEFAULT"
    return cap if cap in _ISA_FLAGS else "DEFAULT"


def _openmp() -> bool:
    """Whether torch splits work with OpenMP: then the extension needs -fopenmp, or ATen's
    ``parallel_for`` (a header template) compiles to a serial loop. The link resolves to the
    libgomp torch has already loaded (same soname), so there is one thread pool, not two."""
    try:
        return "OpenMP" in torch.__config__.parallel_info()
    except (AttributeError, RuntimeError):
        return False


def load(verbose: bool = False) -> ModuleType:
    """Build (first time) and import the extension; returns the module. Raises
    :class:`CPUKernelsUnavailable` with the reason when it cannot."""
    global _module
    if _module is not None:
        return _module
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        raise CPUKernelsUnavailable(
            "rnnkit's CPU kernels are built with ninja, which was not found: pip install ninja")
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise CPUKernelsUnavailable(
            f"rnnkit's CPU kernels need a C++ compiler; {compiler!r} was not found on PATH "
            "(install g++ or clang, or set CXX)")
    omp = ["-fopenmp"] if _openmp() else []
    # the instruction set torch picked, then each lesser one: a compiler too old for AVX-512
    # still gives AVX2 code rather than nothing
    order = list(_ISA_FLAGS) + ["DEFAULT"]
    failures = []
    for cap in order[order.index(_capability()):]:
        flags = ["-O3", *_ISA_FLAGS.get(cap, ["-DCPU_CAPABILITY=DEFAULT"]), *omp]
        try:
            _module = cpp_extension.load(
                name=f"rnnkit_cpu_kernels_{cap.lower()}", sources=[str(_SOURCE)],
                extra_cflags=flags, extra_ldflags=omp, verbose=verbose)
            return _module
        except (RuntimeError, OSError, ImportError) as e:  # a build or load failure, with its log
            failures.append(f"[{cap}] {e}")
    raise CPUKernelsUnavailable("building rnnkit's CPU kernels failed for every instruction set "
                                "tried:\n" + "\n".join(failures))


def available() -> bool:
    """True if the kernels are built and loaded (does not build them)."""
    return _module is not None


def enable(verbose: bool = False) -> None:
    """Build if needed, then use the compiled kernels in the fused LSTM and LN-LSTM (CPU)."""
    from rnnkit.nn import fused

    load(verbose)
    fused.CPU_KERNELS = True


def disable() -> None:
    """Back to the eager (ATen op by op) kernels; the built module stays loaded."""
    from rnnkit.nn import fused

    fused.CPU_KERNELS = False
