"""Building and loading the compiled CPU kernels (a PyTorch C++ extension), on first use.

The first call that takes the compiled path builds the extension (a C++ compiler and ``ninja``,
1-4 minutes on 2 cores) and says so in one line on stderr; the build is cached in PyTorch's extension
folder (``TORCH_EXTENSIONS_DIR``, or ``~/.cache/torch_extensions``) under a name that holds the
instruction set and the torch version (``rnnkit_cpu_kernels_avx2_torch2_13_0``), so another torch
or another CPU gets its own build. A stamp beside the build records what it was built from (the
sources' hash, the flags, torch and Python): when it matches, later processes import the library
directly, in milliseconds, without asking ninja; when a source changes, it is rebuilt.

Where it cannot be built (no ninja, no compiler, a build error), `kernels` returns None and
warns once per process, in one line that names the reason; the layers then run the eager kernels.
A failed build is remembered beside it (same stamp), so the next process does not spend another
minute on it: delete the folder the warning names to try again.

The build targets the instruction set PyTorch itself picked for this CPU
(``torch.backends.cpu.get_cpu_capability()``: AVX512 or AVX2, portable code otherwise; the
environment variable ``ATEN_CPU_CAPABILITY=avx2`` makes both torch and this build take AVX2), and
falls back to the next one down if the compiler cannot build it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import importlib.util
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType

import torch

#: the C++ compiled into the one extension: module.cpp (the Python module; it includes lstm.cpp)
#: and the cells whose state is h alone; every .cpp and .h beside them is read by the build
SOURCES = [Path(__file__).with_name(name) for name in ("module.cpp", "gru.cpp", "elman.cpp")]

#: capability -> (compiler flags, the macros ATen's vec headers select their implementation by)
ISA_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c",
               "-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"],
}
STAMP, FAILED = "rnnkit-build.stamp", "rnnkit-build.failed"


class CPUKernelsUnavailable(RuntimeError):
    """The C++ kernels cannot be built or loaded here (no compiler, no ninja, a build error)."""


class _NoTools(CPUKernelsUnavailable):
    """No ninja or no compiler: no instruction set can be built."""


class CompiledUnavailableWarning(RuntimeWarning):
    """The compiled kernels could not be built: the layers run the (slower) eager kernels."""


def cpu_capability() -> str:
    """The instruction set PyTorch dispatches to on this CPU, as one of ``ISA_FLAGS`` or DEFAULT."""
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return "DEFAULT"
    return cap if cap in ISA_FLAGS else "DEFAULT"


def extension_name(capability: str) -> str:
    """The build's name: the instruction set and the torch version, so neither mixes up builds."""
    version = re.sub(r"[^0-9A-Za-z]+", "_", torch.__version__).strip("_")
    return f"rnnkit_cpu_kernels_{capability.lower()}_torch{version}"


def _openmp() -> bool:
    """Whether torch splits work with OpenMP: then the extension needs -fopenmp, or ATen's
    ``parallel_for`` (a header template) compiles to a serial loop. The link resolves to the
    libgomp torch has already loaded (same soname), so there is one thread pool, not two."""
    try:
        return "OpenMP" in torch.__config__.parallel_info()
    except (AttributeError, RuntimeError):
        return False


def _build_root() -> Path:
    from torch.utils import cpp_extension

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root())


def _stamp(name: str, flags: list[str]) -> str:
    """What a build is made from: every C++ file beside this one, the flags, torch and Python."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.[ch]*")):
        if path.suffix in (".cpp", ".h", ".hpp"):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    h.update("\0".join([name, *flags, torch.__version__, sys.version]).encode())
    return h.hexdigest()


def _import(name: str, path: Path) -> ModuleType:
    """Import a built extension straight from its file (what cpp_extension.load does last)."""
    spec = importlib.util.spec_from_file_location(
        name, path, loader=importlib.machinery.ExtensionFileLoader(name, str(path)))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_tools() -> None:
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        raise _NoTools("ninja was not found (pip install ninja)")
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise _NoTools(
            f"no C++ compiler: {compiler!r} was not found on PATH (install g++ or clang, or set CXX)")


def _first_error(log: str) -> str:
    """The first line of a build log that says ``error``, else its last line: one line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    hits = [ln for ln in lines if "error" in ln.lower()]
    return (hits or lines or ["no output"])[0][:300]


def _plan(cap: str) -> tuple[str, list[str], list[str], Path, str]:
    """(name, compiler flags, linker flags, build folder, stamp) of the build for ``cap``."""
    name = extension_name(cap)
    omp = ["-fopenmp"] if _openmp() else []
    flags = ["-O3", *ISA_FLAGS.get(cap, ["-DCPU_CAPABILITY=DEFAULT"]), *omp]
    return name, flags, omp, _build_root() / name, _stamp(name, flags)


def _finished(cap: str) -> bool:
    """Whether a build for ``cap`` made from these very sources is in the extension folder."""
    name, _, _, folder, key = _plan(cap)
    return (folder / f"{name}.so").exists() and _read(folder / STAMP) == key


def _build_one(cap: str, loader, verbose: bool, progress: list) -> ModuleType:
    """Load the build of ``cap`` if its stamp matches, else build it; ``progress`` holds what
    was said on stderr so far (one line for all attempts, ended by the last)."""
    name, flags, omp, folder, key = _plan(cap)
    library = folder / f"{name}.so"
    if _finished(cap):
        return _import(name, library)
    failed = _read(folder / FAILED)
    if failed and failed.split("\n", 1)[0] == key:  # this very build failed before
        raise CPUKernelsUnavailable(f"{failed.split(chr(10), 1)[1]} (remembered in {folder}; "
                                    "delete that folder to try again)")
    if loader is None:
        from torch.utils import cpp_extension

        _check_tools()
        loader = cpp_extension.load
    if not progress:
        _say(f"rnnkit: building the compiled CPU kernels for this CPU and torch "
             f"{torch.__version__} (once; 1-4 minutes on 2 cores):", progress)
    _say(f" {cap}...", progress)
    start = time.perf_counter()
    try:
        module = loader(name=name, sources=[str(s) for s in SOURCES], extra_cflags=flags,
                        extra_ldflags=omp, verbose=verbose)
    except (RuntimeError, OSError, ImportError) as e:  # a build or load failure, with its log
        _say(" failed;", progress)
        reason = f"the {cap} build failed: {_first_error(str(e))}"
        _write(folder / FAILED, f"{key}\n{reason}")
        raise CPUKernelsUnavailable(reason) from e
    _say(f" done in {time.perf_counter() - start:.0f} s\n", progress)
    _write(folder / STAMP, key)
    (folder / FAILED).unlink(missing_ok=True)
    return module


def _say(text: str, progress: list) -> None:
    print(text, end="", file=sys.stderr, flush=True)
    progress.append(text)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _write(path: Path, text: str) -> None:
    """Best effort: a folder we cannot write only costs a rebuild check next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def build(capability: str | None = None, *, loader=None, verbose: bool = False) -> ModuleType:
    """Load (or build) and import the extension for ``capability`` (default: this CPU's),
    falling back to each lesser instruction set; raises `CPUKernelsUnavailable` naming the
    reason when none works. ``loader`` stands in for ``torch.utils.cpp_extension.load`` (the
    tests pass a fake one)."""
    order = [*ISA_FLAGS, "DEFAULT"]
    reasons, progress = [], []
    try:
        for cap in order[order.index(capability or cpu_capability()):]:
            try:
                return _build_one(cap, loader, verbose, progress)
            except _NoTools:
                raise
            except CPUKernelsUnavailable as e:
                reasons.append(str(e))
        raise CPUKernelsUnavailable("; ".join(reasons))
    finally:
        if progress and not progress[-1].endswith("\n"):
            print(file=sys.stderr, flush=True)  # end the progress line


@functools.cache
def load() -> ModuleType:
    """The extension for this CPU, built on first use; later calls return the same module.
    Raises `CPUKernelsUnavailable`; a failure is not remembered by this function (the
    next call tries again, after ``pip install ninja``, say)."""
    return build()


@functools.cache
def kernels() -> ModuleType | None:
    """The extension, or None (once per process, with one warning naming the reason) where it
    cannot be built: what the default compiled path asks, so a failure costs one attempt."""
    try:
        return load()
    except CPUKernelsUnavailable as e:
        warnings.warn(f"rnnkit: the compiled CPU kernels are unavailable ({e}); running the "
                      "eager kernels instead, which are slower (RNNKIT_COMPILED=0 skips the "
                      "attempt)", CompiledUnavailableWarning, stacklevel=_caller_level())
        return None


def _caller_level() -> int:
    """The stack level of the first frame outside rnnkit and torch: the warning points there."""
    inside = (str(Path(__file__).parents[3]), str(Path(torch.__file__).parent))
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


def available() -> bool:
    """True if the kernels are built and loaded in this process (does not build them)."""
    return load.cache_info().currsize > 0


def ready() -> bool:
    """True if the kernels are loaded in this process, or load now without a build (a finished
    build for this CPU and these sources is in the extension folder). Never starts a build: for
    the callers to whom the kernels are only worth their load time (one ``step()`` of a layer
    whose ``forward`` runs torch's own kernels, e.g. the char LM's sampler)."""
    if available() or kernels.cache_info().currsize > 0:
        return available()
    return _finished(cpu_capability()) and kernels() is not None
