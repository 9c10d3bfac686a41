"""Deprecated: the compiled CPU kernels live in `rnnkit.nn.fast.compiled` and are chosen per
call, not switched on for the whole process.

    with rnnkit.options(compiled=True):   # instead of cpu_kernels.enable()
        out, (h, c) = layer(x)
    rnnkit.LayerNormLSTM(16, 32, compiled=True)   # or fixed for one layer

``load()``, ``available()`` and ``CPUKernelsUnavailable`` keep working (they are the same as in
``rnnkit.nn.fast.compiled``). ``enable()`` and ``disable()`` warn and set the choice for the rest of
the calling thread's current context (what ``rnnkit.options`` scopes to a ``with`` block).
"""

from __future__ import annotations

import dataclasses
import warnings

from rnnkit.nn.fast.compiled.build import CPUKernelsUnavailable, available
from rnnkit.nn.fast.compiled.build import load as _load
from rnnkit.options import _CURRENT, current

__all__ = ["CPUKernelsUnavailable", "available", "disable", "enable", "load"]


def load(verbose: bool = False):
    """Build (first time) and import the extension; returns the module."""
    return _load()


def _set(compiled: bool, instead: str) -> None:
    warnings.warn(f"rnnkit.nn.cpu_kernels.{instead} is deprecated; use "
                  f"rnnkit.options(compiled={compiled}) around the calls, or a layer's "
                  f"compiled={compiled}", DeprecationWarning, stacklevel=3)
    _CURRENT.set(dataclasses.replace(current(), compiled=compiled))


def enable(verbose: bool = False) -> None:
    """Build if needed, then take the compiled kernels in this thread from now on (deprecated)."""
    _load()
    _set(True, "enable()")


def disable() -> None:
    """Back to the eager kernels in this thread (deprecated)."""
    _set(False, "disable()")
