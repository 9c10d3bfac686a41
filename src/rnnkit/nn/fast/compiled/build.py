"""Building and loading the compiled CPU kernels (``lstm.cpp``, a PyTorch C++ extension).

The build needs a C++ compiler and ``ninja`` (``pip install ninja``, or the ``native`` extra)
and takes about a minute the first time; later processes load the cached build from PyTorch's
extension folder (``TORCH_EXTENSIONS_DIR``, or ``~/.cache/torch_extensions``). A build says so
on stderr when it starts and when it is done; loading from the cache prints nothing.

The build targets the instruction set PyTorch itself picked for this CPU
(``torch.backends.cpu.get_cpu_capability()``: AVX512, AVX2, or portable code otherwise), and falls
back to the next one down if the compiler cannot build it. Nothing is built unless a call takes
the compiled path (``rnnkit.options(compiled=True)`` or a layer's ``compiled=True``).
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType

import torch

#: the C++ compiled into the one extension: module.cpp (the Python module; it includes lstm.cpp)
#: and the cells whose state is h alone; every .cpp and .h beside them is read by the build
SOURCES = [Path(__file__).with_name(name) for name in ("module.cpp", "gru.cpp", "elman.cpp")]


def newest_source() -> float:
    """The modification time of the newest C++ source or header the build reads."""
    here = Path(__file__).parent
    return max(p.stat().st_mtime for p in [*here.glob("*.cpp"), *here.glob("*.h")])

#: capability -> (compiler flags, the macros ATen's vec headers select their implementation by)
ISA_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c",
               "-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"],
}


class CPUKernelsUnavailable(RuntimeError):
    """The C++ kernels cannot be built or loaded here (no compiler, no ninja, a build error)."""


def cpu_capability() -> str:
    """The instruction set PyTorch dispatches to on this CPU, as one of ``ISA_FLAGS`` or DEFAULT."""
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return "DEFAULT"
    return cap if cap in ISA_FLAGS else "DEFAULT"


def _openmp() -> bool:
    """Whether torch splits work with OpenMP: then the extension needs -fopenmp, or ATen's
    ``parallel_for`` (a header template) compiles to a serial loop. The link resolves to the
    libgomp torch has already loaded (same soname), so there is one thread pool, not two."""
    try:
        return "OpenMP" in torch.__config__.parallel_info()
    except (AttributeError, RuntimeError):
        return False


def _cached(name: str) -> bool:
    """Whether a build of ``name`` newer than the sources sits in the extension folder."""
    from torch.utils import cpp_extension

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    built = Path(root) / name / f"{name}.so"
    return built.exists() and built.stat().st_mtime >= newest_source()


def _check_tools() -> None:
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        raise CPUKernelsUnavailable(
            "rnnkit's CPU kernels are built with ninja, which was not found: pip install ninja")
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise CPUKernelsUnavailable(
            f"rnnkit's CPU kernels need a C++ compiler; {compiler!r} was not found on PATH "
            "(install g++ or clang, or set CXX)")


def build(capability: str | None = None, *, loader=None, verbose: bool = False) -> ModuleType:
    """Build (or load from the cache) and import the extension for ``capability`` (default: this
    CPU's), falling back to each lesser instruction set; raises :class:`CPUKernelsUnavailable`
    with every attempt's reason when none works. ``loader`` stands in for
    ``torch.utils.cpp_extension.load`` (the tests pass a fake one)."""
    if loader is None:
        from torch.utils import cpp_extension

        _check_tools()
        loader = cpp_extension.load
    omp = ["-fopenmp"] if _openmp() else []
    order = [*ISA_FLAGS, "DEFAULT"]
    failures = []
    for cap in order[order.index(capability or cpu_capability()):]:
        name = f"rnnkit_cpu_kernels_{cap.lower()}"
        flags = ["-O3", *ISA_FLAGS.get(cap, ["-DCPU_CAPABILITY=DEFAULT"]), *omp]
        announce = not _cached(name)
        if announce:
            print(f"rnnkit: building the compiled CPU kernels ({cap}; first use only, about a "
                  "minute)...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            module = loader(name=name, sources=[str(s) for s in SOURCES], extra_cflags=flags,
                            extra_ldflags=omp, verbose=verbose)
        except (RuntimeError, OSError, ImportError) as e:  # a build or load failure, with its log
            failures.append(f"[{cap}] {e}")
            continue
        if announce:
            print(f"rnnkit: compiled CPU kernels built in {time.perf_counter() - start:.0f} s",
                  file=sys.stderr, flush=True)
        return module
    raise CPUKernelsUnavailable("building rnnkit's CPU kernels failed for every instruction set "
                                "tried:\n" + "\n".join(failures))


@functools.cache
def load() -> ModuleType:
    """The extension for this CPU, built on first use; later calls return the same module.
    A failure is not remembered: the next call tries again (after ``pip install ninja``, say)."""
    return build()


def available() -> bool:
    """True if the kernels are built and loaded in this process (does not build them)."""
    return load.cache_info().currsize > 0
