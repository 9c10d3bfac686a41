"""``FusedRNN``, ``FusedLSTM``, ``FusedGRU``: rnnkit's layers on the fast path, with recurrent dropout.

"Fused" names these layers only: each direction of each layer runs its whole sequence as ONE
autograd Function with hand-written BPTT (`rnnkit.nn.fast`), fused over time, instead of a
Python loop that autograd records step by step. (PyTorch's own kernels, which the stock
``rnnkit.LSTM`` calls, are "native" here.) Same constructor, inputs, outputs and parameters as
``rnnkit.RNN/LSTM/GRU``; ``backend="loop"`` runs the same recurrence and masks through the readable
`rnnkit.nn.loop.scan` instead (and so does ``proj_size > 0``, which the fast kernels do not
implement). ``backend="native"`` is refused: torch has no kernel for the dropouts below.

Extra keyword-only constructor arguments:

* ``recurrent_dropout`` (variational, on ``h`` entering ``W_hh``), ``zoneout`` (a float, or
  ``(p_h, p_c)`` for the LSTM), ``weight_dropout`` (DropConnect on ``W_hh``): see
  `rnnkit.nn.dropout`; all 0 by default.
* ``compiled``: True to run the time loop in C++ where a compiled kernel covers the cell (every
  cell here, on CPU, float32/float64), False never; None (default) follows ``rnnkit.options``.
"""

from __future__ import annotations

import sys
import types
import warnings

from torch import Tensor

from rnnkit.nn._checks import check_bool, check_probability
from rnnkit.nn.cells import combined_bias, input_projection, layer_step
from rnnkit.nn.dropout import drop_connect, variational_mask, zoneout_keep
from rnnkit.nn.fast import ops, products
from rnnkit.nn.fast.driver import Recurrence, check_arguments, keeps_per_state, recurrence
from rnnkit.nn.fast.registry import KERNELS
from rnnkit.nn.fast.workspace import SHARED_POOL
from rnnkit.nn.interop import allow_weights_only_load
from rnnkit.nn.loop import scan
from rnnkit.nn.paths import COMPILED, LOOP, SCAN, choose_path, time_loop
from rnnkit.nn.rnn import GRU, LSTM, RNN
from rnnkit.nn.sequence import FAST_CELLS


class FusedMixin:
    """Runs every (layer, direction) of an ``rnnkit.nn.rnn.RNNBase`` layer on the fast path.

    Put it first in the bases (``class FusedLSTM(FusedMixin, LSTM)``): it overrides the
    ``_run_direction`` hook, so batch_first, bidirectional, stacked layers, packed sequences,
    ``lengths`` and ``hx`` all come from the base class.
    """

    _has_native = False
    _native_reason = "it runs rnnkit's fast path, which torch has no kernel for"

    def __init__(self, *args, recurrent_dropout=0.0, zoneout=0.0, weight_dropout=0.0,
                 compiled=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.recurrent_dropout = check_probability("recurrent_dropout", recurrent_dropout)
        self.weight_dropout = check_probability("weight_dropout", weight_dropout)
        self.compiled = None if compiled is None else check_bool("compiled", compiled)
        n_state = 2 if self.mode == "LSTM" else 1
        if isinstance(zoneout, (tuple, list)):
            if len(zoneout) != n_state:
                raise ValueError(
                    f"{type(self).__name__}: zoneout takes a float or one probability per state "
                    f"tensor ({n_state}: {'(p_h, p_c)' if n_state == 2 else '(p_h,)'}); "
                    f"got {len(zoneout)} values"
                )
            zoneout = tuple(check_probability("zoneout", p) for p in zoneout)
        else:
            zoneout = (check_probability("zoneout", zoneout),) * n_state
        self.zoneout = zoneout

    def extra_repr(self) -> str:
        s = super().extra_repr()
        for name in ("recurrent_dropout", "weight_dropout"):
            if getattr(self, name):
                s += f", {name}={getattr(self, name)}"
        if any(self.zoneout):
            z = self.zoneout
            s += f", zoneout={z[0] if len(set(z)) == 1 else z}"
        if self.compiled is not None:
            s += f", compiled={self.compiled}"
        return s

    @property
    def fast_cell(self) -> str | None:
        """The cell this layer runs on the fast path; None with a projection (no kernel for it)."""
        return None if self.proj_size else FAST_CELLS[self.mode]

    def _fast_inputs(self, x: Tensor, w: dict, layer: int, reverse: bool, path: str):
        """(cell, gi (T, B, G), the cell's extra parameters) for this direction on ``path``."""
        params = (w["b_hh"],) if self.mode == "GRU" else ()
        if path in (LOOP, SCAN):  # the readable path's own product (and a traceable one)
            return self.fast_cell, input_projection(self.mode, x, w), params
        # as input_projection, by the library the fast path's products use (products.py)
        bias = w["b_ih"] if self.mode == "GRU" else combined_bias(w["b_ih"], w["b_hh"])
        return self.fast_cell, products.linear(x, w["w_ih"], bias), params

    def _step(self, w: dict, w_hh: Tensor, params: tuple, hidden_mask: Tensor | None):
        """``step(gi_t, state) -> state`` for the readable path (see `layer_step`)."""
        return layer_step(self.mode, w, w_hh, hidden_mask)

    def _run_direction(self, x, state, layer, reverse, lengths, path=LOOP):
        """x (T, B, I), state tuple of (B, ·) -> (out (T, B, H_out), state)."""
        w = self._direction_weights(layer, reverse)
        w_hh = drop_connect(w["w_hh"], self.weight_dropout, self.training)
        cell, gi, params = self._fast_inputs(x, w, layer, reverse, path)
        T, B = gi.shape[:2]
        keep = tuple(zoneout_keep(T, B, s.shape[-1], p, self.training, gi) if p else None
                     for s, p in zip(state, self.zoneout))
        hidden_mask = None
        if self.recurrent_dropout and self.training:
            hidden_mask = variational_mask(B, state[0].shape[-1], self.recurrent_dropout, gi)
        if path in (LOOP, SCAN):  # SCAN: the same loop as torch's scan op (compile, export)
            step = self._step(w, w_hh, params, hidden_mask)
            return time_loop(path)(step, gi, state, lengths, reverse, keep=keep)
        dtype = gi.dtype  # under autocast gi may be bf16 while the weights are float32
        params = tuple(None if p is None else p.to(dtype) for p in params)
        state = tuple(s.to(dtype) for s in state)
        return recurrence(cell, gi, state, w_hh.to(dtype), params, reverse=reverse,
                          lengths=lengths, keep=keep, hidden_mask=hidden_mask,
                          compiled=path == COMPILED)


class FusedRNN(FusedMixin, RNN):
    """``rnnkit.RNN`` on the fast path, with recurrent dropout (see `rnnkit.nn.fused`)."""


class FusedLSTM(FusedMixin, LSTM):
    """``rnnkit.LSTM`` on the fast path, with recurrent dropout (see `rnnkit.nn.fused`)."""


class FusedGRU(FusedMixin, GRU):
    """``rnnkit.GRU`` on the fast path, with recurrent dropout (see `rnnkit.nn.fused`)."""


allow_weights_only_load(FusedRNN, FusedLSTM, FusedGRU)  # sound: see rnnkit.nn.interop


# --------------------------------------------------------------------------------------------------
# Names this module had before the fast path became its own package, kept working with a warning.
# --------------------------------------------------------------------------------------------------


def _fused_recurrence(cell, gi, state, w_hh, params=(), *, reverse=False, hidden_mask=None,
                      keep=None, valid=None):
    """The old entry point: ``valid`` (T, B, 1) zeroes the outputs; ``keep`` already holds it."""
    spec = check_arguments(cell, gi, state, w_hh, params)
    compiled = choose_path("auto", gi, fast_cell=cell) == COMPILED
    out, *final = Recurrence.apply(cell, compiled, reverse, gi.contiguous(), w_hh, hidden_mask,
                                   valid, *keeps_per_state(keep, spec.n_state),
                                   *(s.contiguous() for s in state), *params)
    return out, tuple(final)


def _reference_recurrence(step, gi, state, *, reverse=False, hidden_mask=None, keep=None,
                          valid=None):
    """The old readable loop: ``step(gi_t, h_in, state) -> state``; masks as above."""
    def step_(g, s):
        return step(g, s[0] if hidden_mask is None else s[0] * hidden_mask, s)

    keep = keeps_per_state(keep, len(state))[: len(state)]
    out, final = scan(step_, gi, state, reverse=reverse, keep=keep)
    return (out if valid is None else out * valid), final


_MOVED = {  # old name -> (where it lives now, the object)
    "fused_recurrence": ("rnnkit.nn.fast.driver.recurrence", _fused_recurrence),
    "reference_recurrence": ("rnnkit.nn.loop.scan", _reference_recurrence),
    "FUSED_WORKSPACE": ("rnnkit.nn.fast.workspace.SHARED_POOL", SHARED_POOL),
    "EPS": ("rnnkit.nn.fast.ops.EPS", ops.EPS),
    "CELLS": ("rnnkit.nn.fast.registry.KERNELS",
              {k: (v.eager, v.n_state, v.gates, v.params) for k, v in KERNELS.items()}),
}
_REMOVED = {  # module switches read at run time, replaced by scoped options
    "CPU_KERNELS": "rnnkit.options(compiled=True) or the layer's compiled=True",
    "PACKED_GEMM": "rnnkit.options(gemm='torch')",
    "PACKED_BACK": "nothing: the backward's products are packed whenever the forward's are",
    "WHOLE_LOOP": "nothing: the compiled kernels always run the whole time loop",
}


def __getattr__(name: str):
    if name in _MOVED:
        new, obj = _MOVED[name]
        warnings.warn(f"rnnkit.nn.fused.{name} is deprecated; use {new}", DeprecationWarning,
                      stacklevel=2)
        return obj
    if name in _REMOVED:
        raise AttributeError(f"rnnkit.nn.fused.{name} was removed; use {_REMOVED[name]}")
    raise AttributeError(f"module 'rnnkit.nn.fused' has no attribute {name!r}")


class _Module(types.ModuleType):
    def __setattr__(self, name, value):
        if name in _REMOVED:  # setting it would silently change nothing
            raise AttributeError(f"rnnkit.nn.fused.{name} was removed; use {_REMOVED[name]}")
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Module
