"""Scoped execution choices: which implementation runs a call, never what it computes.

    import rnnkit

    with rnnkit.options(compiled=False):    # the eager kernels instead of the compiled C++ loop
        out, (h, c) = layer(x)

    rnnkit.FusedLSTM(16, 32, compiled=False)  # the same choice, fixed for one layer

Every choice here changes speed or memory only; each path is tested against its reference
(docs/architecture.md names the tests). The choices hold inside the ``with`` block, in the thread
(or asyncio task) that entered it: they live in a `contextvars.ContextVar`, the way
``torch.no_grad`` keeps its flag per thread, so two threads may run with different choices. A new
thread starts from the defaults. A layer's constructor argument, when given, wins over the scope.

Choices:

* ``compiled`` (default True, or the environment variable ``RNNKIT_COMPILED``, read once when
  rnnkit first needs its options: ``0`` turns it off): run the time loop and each step's
  elementwise work in C++ (`rnnkit.nn.fast.compiled`) for the cells it covers, on CPU in
  float32/float64. It is built on first use (1-4 minutes on 2 cores, one line on stderr) and cached per
  torch version and instruction set; where it cannot be built (no C++ compiler, no ninja, a build
  error) the fast path's eager kernels run and a warning says why, once per process.
* ``gemm`` (default ``"auto"``): what computes the matrix products with a weight that the fast
  path repeats at every step (``h W_hh^T``, ``da W_hh``) and its products over whole sequences.
  ``"onednn"``: oneDNN, the weight reordered once per call (what ``torch.nn.LSTM`` runs on CPU);
  ``"mkl_packed"``: MKL's packed-weight GEMM per step, ATen's products elsewhere; ``"torch"``:
  ATen's products (``torch.mm``) throughout. ``"auto"`` takes oneDNN where PyTorch has it: it
  picks its code for the CPU it runs on (AVX-512 where there is AVX-512), where MKL takes its AVX2
  code on AMD CPUs (``benchmarks/products.py`` measures all three). Float64 always runs on
  ``"torch"`` (neither oneDNN nor MKL's packed GEMM take it).
* ``workspace`` (default True): large buffers of a finished call are handed to the next call of
  the same shape (the shared pool of ``rnnkit.nn.fast.workspace``); False allocates fresh buffers
  every call and keeps none; a ``Workspace`` instance uses that pool instead of the shared one.

``packed_gemm=False`` (before ``gemm`` existed) still works and means ``gemm="torch"``, with a
DeprecationWarning. This module does not import torch (``import rnnkit`` stays light); the code
that acts on the choices reads them with `current` when a call starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from collections.abc import Iterator
from contextvars import ContextVar

GEMMS = ("auto", "onednn", "mkl_packed", "torch")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def env_flag(name: str, default: bool) -> bool:
    """A yes/no environment variable: unset or empty -> ``default``; else one of 1/0, true/false,
    yes/no, on/off (any case), or a ValueError naming the variable."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE + _FALSE:
        return value in _TRUE
    raise ValueError(f"environment variable {name} must be 1 or 0 (or true/false, yes/no, "
                     f"on/off), got {os.environ[name]!r}")


@dataclasses.dataclass(frozen=True)
class Options:
    """The execution choices in force (see the module docstring for each)."""

    compiled: bool = env_flag("RNNKIT_COMPILED", True)  # read once, when this module loads
    gemm: str = "auto"
    workspace: object = True  # True, False, or a rnnkit.nn.fast.workspace.Workspace

    @property
    def packed_gemm(self) -> bool:
        """Deprecated view of ``gemm``: False when the products are ``torch.mm``."""
        return self.gemm != "torch"


_CURRENT: ContextVar[Options] = ContextVar("rnnkit_options", default=Options())  # noqa: B039 (frozen)
_NAMES = tuple(f.name for f in dataclasses.fields(Options))


def current() -> Options:
    """The choices in force for the calling thread or task."""
    return _CURRENT.get()


def _checked(choices: dict) -> dict:
    if "packed_gemm" in choices:
        packed = choices.pop("packed_gemm")
        if not isinstance(packed, bool):
            raise TypeError(f"options(): packed_gemm must be a bool, got {type(packed).__name__}")
        warnings.warn("rnnkit.options(packed_gemm=...) is deprecated; use gemm='torch' (for "
                      "packed_gemm=False) or gemm='auto'", DeprecationWarning, stacklevel=4)
        choices.setdefault("gemm", "auto" if packed else "torch")
    for name, value in choices.items():
        if name not in _NAMES:
            raise TypeError(
                f"options() got an unexpected keyword argument {name!r}. "
                f"Expected one of {', '.join(_NAMES)}"
            )
        if name == "workspace":
            ok = isinstance(value, bool) or all(hasattr(value, m) for m in ("take", "give"))
            want = "a bool or a Workspace"
        elif name == "gemm":
            ok, want = value in GEMMS, f"one of {', '.join(map(repr, GEMMS))}"
            if not ok:
                raise ValueError(f"options(): gemm must be {want}, got {value!r}")
        else:
            ok, want = isinstance(value, bool), "a bool"
        if not ok:
            raise TypeError(f"options(): {name} must be {want}, got {type(value).__name__}")
    return choices


@contextlib.contextmanager
def options(**choices) -> Iterator[Options]:
    """Run the ``with`` block under these choices; the ones not named keep their current value.

    Yields the `Options` in force inside the block. Nesting works as expected: the inner
    block's choices override the outer's until it ends.
    """
    token = _CURRENT.set(dataclasses.replace(current(), **_checked(dict(choices))))
    try:
        yield current()
    finally:
        _CURRENT.reset(token)
