"""Scoped execution choices: which implementation runs a call, never what it computes.

    import rnnkit

    with rnnkit.options(compiled=True):     # the compiled C++ time loop, where one exists
        out, (h, c) = layer(x)

    rnnkit.FusedLSTM(16, 32, compiled=True)  # the same choice, fixed for one layer

Every choice here changes speed or memory only; each path is tested against its reference
(docs/architecture.md names the tests). The choices hold inside the ``with`` block, in the thread
(or asyncio task) that entered it: they live in a :class:`contextvars.ContextVar`, the way
``torch.no_grad`` keeps its flag per thread, so two threads may run with different choices. A new
thread starts from the defaults. A layer's constructor argument, when given, wins over the scope.

Choices:

* ``compiled`` (default False): run the time loop and each step's elementwise work in C++
  (``rnnkit.nn.fast.compiled``, built on first use, about a minute) for the cells it covers (LSTM
  and layer-norm LSTM on CPU, float32/float64). Elsewhere the fast path's eager kernels run.
* ``packed_gemm`` (default True): the per-step products with ``W_hh`` use MKL's packed-weight GEMM
  where PyTorch has it (CPU, float32); False uses ``torch.mm``.
* ``workspace`` (default True): large buffers of a finished call are handed to the next call of
  the same shape (the shared pool of ``rnnkit.nn.fast.workspace``); False allocates fresh buffers
  every call and keeps none; a ``Workspace`` instance uses that pool instead of the shared one.

This module does not import torch (``import rnnkit`` stays light); the code that acts on the
choices reads them with :func:`current` when a call starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from contextvars import ContextVar


@dataclasses.dataclass(frozen=True)
class Options:
    """The execution choices in force (see the module docstring for each)."""

    compiled: bool = False
    packed_gemm: bool = True
    workspace: object = True  # True, False, or a rnnkit.nn.fast.workspace.Workspace


_CURRENT: ContextVar[Options] = ContextVar("rnnkit_options", default=Options())  # noqa: B039 (frozen)
_NAMES = tuple(f.name for f in dataclasses.fields(Options))


def current() -> Options:
    """The choices in force for the calling thread or task."""
    return _CURRENT.get()


def _checked(choices: dict) -> dict:
    for name, value in choices.items():
        if name not in _NAMES:
            raise TypeError(
                f"options() got an unexpected keyword argument {name!r}. "
                f"Expected one of {', '.join(_NAMES)}"
            )
        if name == "workspace":
            ok = isinstance(value, bool) or all(hasattr(value, m) for m in ("take", "give"))
            want = "a bool or a Workspace"
        else:
            ok, want = isinstance(value, bool), "a bool"
        if not ok:
            raise TypeError(f"options(): {name} must be {want}, got {type(value).__name__}")
    return choices


@contextlib.contextmanager
def options(**choices) -> Iterator[Options]:
    """Run the ``with`` block under these choices; the ones not named keep their current value.

    Yields the :class:`Options` in force inside the block. Nesting works as expected: the inner
    block's choices override the outer's until it ends.
    """
    token = _CURRENT.set(dataclasses.replace(current(), **_checked(choices)))
    try:
        yield current()
    finally:
        _CURRENT.reset(token)
