"""Deprecated: ``compile_min_rnn`` lives in `rnnkit.nn.mingru` now.

"Compiled" in rnnkit names the C++ kernels of `rnnkit.nn.fast.compiled`; this module's one
function wraps ``torch.compile`` for minGRU, so it moved beside the model it compiles.
"""

from __future__ import annotations

import warnings


def __getattr__(name: str):
    if name == "compile_min_rnn":
        from rnnkit.nn.mingru import compile_min_rnn

        warnings.warn("rnnkit.nn.compiled.compile_min_rnn is deprecated; use "
                      "rnnkit.nn.mingru.compile_min_rnn", DeprecationWarning, stacklevel=2)
        return compile_min_rnn
    raise AttributeError(f"module 'rnnkit.nn.compiled' has no attribute {name!r}")
