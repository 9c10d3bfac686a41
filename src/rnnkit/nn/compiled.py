"""Opt-in ``torch.compile`` for the parts of rnnkit where it pays, and only those.

What helps: the gate coefficients of :class:`~rnnkit.nn.mingru.MinGRU` / ``MinLSTM``. Computing
``a = σ(-k)`` and ``b = σ(k) g(v)`` (minLSTM: through ``softplus``) over all (T, B, H) elements is a
chain of ~8 elementwise passes over arrays far larger than the cache; Inductor fuses them into one
loop, which measured 3-5x faster than eager on the benchmark shape (``benchmarks/mingru_scan.py
--compile``). The scan itself stays eager: it is already a few large ops.

What does not: the fused recurrences of ``rnnkit.nn.fused`` already run one ``torch.autograd.Function``
per sequence with hand-written backward; compiling a Python time loop unrolls it (compile time grows
with T and recompiles for every new T).

Compilation needs a C++ compiler on CPU (Inductor) and takes tens of seconds on first call; nothing
here is used unless you call it. The compiled model gives the same numbers as the eager one to
float rounding (``tests/speed/test_compiled.py``, marked slow).
"""

from __future__ import annotations

import torch
from torch import nn

from rnnkit.nn.mingru import _MinRNN


def compile_min_rnn(model: nn.Module, **compile_kwargs) -> nn.Module:
    """Compile the coefficient computation of a MinGRU / MinLSTM in place; returns the model.

    ``compile_kwargs`` go to ``torch.compile`` (e.g. ``mode="max-autotune-no-cudagraphs"``).
    ``dynamic=True`` is the default so that a new sequence length does not recompile.
    """
    if not isinstance(model, _MinRNN):
        raise TypeError(f"compile_min_rnn expects a MinGRU or MinLSTM, got {type(model).__name__}")
    compile_kwargs.setdefault("dynamic", True)
    # an instance attribute shadows the method: forward and forward_sequential both pick it up
    model.coefficients = torch.compile(model.coefficients, **compile_kwargs)
    model.log_coefficients = torch.compile(model.log_coefficients, **compile_kwargs)
    return model
