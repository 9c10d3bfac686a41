"""Old public names of rnnkit.scratch, kept working: each use warns and gives the new object.

A module lists its old names and where each now lives, and takes the function this returns as its
module-level ``__getattr__`` (PEP 562), so ``from rnnkit.scratch.charlm import CharLM`` and
``charlm.CharLM`` both still work and raise a DeprecationWarning that names the replacement.
"""

from __future__ import annotations

import importlib
import warnings


def renamed(module_name: str, table: dict[str, str]):
    """A module ``__getattr__`` serving ``table``: old name -> "package.module:new_name"."""

    def __getattr__(name):
        if name not in table:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        where, _, new_name = table[name].partition(":")
        message = f"{module_name}.{name} is deprecated: use {where}.{new_name}"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(where), new_name)

    return __getattr__
