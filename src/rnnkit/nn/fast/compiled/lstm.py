"""The bridge to ``lstm.cpp``: the (layer-norm) LSTM kernel whose time loop runs in C++.

The same mathematics and driver interface as the eager kernels of `rnnkit.nn.fast.lstm`
(``layer_norm=True``: ``LNLSTMKernel``; ``False``: ``LSTMKernel``), but the kernel runs the whole
time loop itself (``forward_all`` / ``backward_all``), with the same per-step products, masks and
blends as the driver's Python loop, in the same order. What differs is what is kept. With layer
norm, forward keeps ``â = (a - mean) rstd`` in place of ``a``, ``ĉ`` and the two ``rstd`` per step (a
backward needs nothing else of the layer norms), and backward computes the local derivatives row by
row instead of as bulk arrays, adding each step's share of the gains' and shift's gradients
(``dγ_hh = Σ dgates ⊙ â``, ``dγ_c = Σ dz ⊙ ĉ``, ``dβ_c = Σ dz``, ``dz`` the gradient of ``γ_c ĉ + β_c``)
while its rows are in cache. The plain LSTM keeps the gate activations, ``tanh(g)`` and ``y``, and
its ``da`` is the gates' gradient itself.

With ``input_ln`` (cell ``ln_lstm_x``), ``gi`` is ``W_ih x`` before the input side's layer norm and
the loop applies ``γ_ih LN(·) + shift`` to each row as it goes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.nn.fast.compiled.build import load
from rnnkit.nn.fast.ops import EPS
from rnnkit.nn.fast.workspace import Owner


class CompiledLSTMKernel(Owner):
    """params: LN (γ_hh, γ_c, β_c), with ``input_ln`` also (γ_ih, shift); plain LSTM ()."""

    def __init__(self, gi: Tensor, params: tuple, save: bool = True, eps: float = EPS,
                 input_ln: bool = False, layer_norm: bool = True) -> None:
        ext = self.ext = load()
        T, B, G = gi.shape
        H = G // 4
        R = T if save else 1  # as the eager LSTMKernel: without backward, every step reuses one row
        self.gi, self.ln, self.input_ln, self.save = gi, layer_norm, input_ln, save
        params = tuple(p.contiguous() for p in params)
        self.none = gi.new_empty(0)  # for the tensors the plain LSTM does not have
        self.gains = params[:3] if layer_norm else (self.none,) * 3  # γ_hh, γ_c, β_c
        self.cell = ext.Cell(layer_norm=layer_norm, eps=eps, gamma_hh=self.gains[0],
                             gamma_c=self.gains[1], beta_c=self.gains[2],
                             gamma_ih=params[3] if input_ln else None,
                             shift=params[4] if input_ln else None)
        self.params = params
        self.act = self.take((R, B, G), gi)  # σ(i), σ(f), (unused), σ(o)
        g, y = (self.take((R, B, H), gi) for _ in range(2))  # tanh(g), y
        if layer_norm:
            ahat = self.take((R, B, G), gi)  # â
            chat = self.take((R, B, H), gi)  # ĉ
            rstd = self.take((2, R, B), gi)  # rstd of a, rstd of c'
        else:
            ahat = self.take((1, B, G), gi)  # scratch: the product a of one step
            chat = rstd = self.none
        stat_x = self.take((2, R, B), gi) if input_ln else None  # mean, rstd of W_ih x
        self.saved = ext.Saved(act=self.act, gt=g, y=y, ahat=ahat, chat=chat, rstd=rstd,
                               stat_x=stat_x)

    def forward_all(self, reverse, S, prod, hidden_mask, keeps, NEW):
        """The forward over all steps. S: the (T + 1, B, H) state buffers; keeps: (keep_h,
        keep_c); NEW: the (T, B, H) buffers of the unblended new states, or None."""
        ext = self.ext
        product = ext.Linear(weight=prod.w_hh, weight_t=self.none if prod.packed else prod.w_t,
                             packed=prod.fwd_w if prod.packed else None, backend=prod.backend)
        states = ext.States(*S, *(NEW if NEW is not None else (None, None)))
        ext.lstm_forward_loop(self.cell, product, ext.Masks(hidden_mask, *keeps), states,
                              self.saved, self.gi, reverse, self.save)

    def prepare_backward(self, prev_all, new_all):
        B, H = self.act.shape[1], self.act.shape[2] // 4
        self.c_prev = prev_all[1]  # (T, B, H) the cell state each step read
        input_ln = {}
        if self.input_ln:  # the gates' gradient is scratch; what backward returns is dx
            dg = self.take((1, B, 4 * H), self.act)  # one step of d gates
            self.dx = torch.empty_like(self.act)  # (T, B, 4H) gradient of W_ih x
            input_ln = {"dx": self.dx, "xhat": self.take((B, 4 * H), self.act)}  # xhat: scratch
        else:
            dg = torch.empty_like(self.act)  # (T, B, 4H) gradient of the gates (= of gi)
        self.dg = dg
        # (T, B, 4H) gradient of a: for the plain LSTM the gates' gradient itself
        self.da = self.take(self.act.shape, self.act) if self.ln else dg
        # dγ_hh, dγ_c, dβ_c (and dγ_ih, d shift), added to by every step
        self.d_params = tuple(torch.zeros_like(p) for p in self.params)
        d_gains = self.d_params[:3] if self.ln else (self.none,) * 3
        if self.input_ln:
            input_ln |= {"d_gamma_ih": self.d_params[3], "d_shift": self.d_params[4]}
        dz = self.act.new_empty(B, H) if self.ln else self.none  # scratch: d (γ_c ĉ + β_c)
        self.grads = self.ext.Grads(self.dg, self.da, dz, *d_gains, **input_ln)

    def backward_all(self, reverse, dy, d_final, prod, hidden_mask, keeps):
        """The backward over all steps; returns the gradients on (h0, c0)."""
        ext = self.ext
        if prod.packed:
            packed, origin = prod.back_weights()
            product = ext.Linear(weight=origin, weight_t=prod.w_hh, packed=packed,
                                 backend=prod.backend)
        else:
            product = ext.Linear(weight=prod.w_hh, weight_t=prod.w_hh)
        return ext.lstm_backward_loop(self.cell, product, ext.Masks(hidden_mask, *keeps),
                                      self.saved, self.grads, self.gi, self.c_prev, dy,
                                      *d_final, reverse)

    def finish(self):
        return self.dx if self.input_ln else self.dg, self.da, self.d_params


def lstm_kernel(gi: Tensor, params: tuple, save: bool = True) -> CompiledLSTMKernel:
    """The plain LSTM (cell ``lstm``)."""
    return CompiledLSTMKernel(gi, params, save, layer_norm=False)


def ln_lstm_kernel(gi: Tensor, params: tuple, save: bool = True) -> CompiledLSTMKernel:
    """The layer-norm LSTM (cell ``ln_lstm``)."""
    return CompiledLSTMKernel(gi, params, save)


def ln_lstm_x_kernel(x: Tensor, params: tuple, save: bool = True) -> CompiledLSTMKernel:
    """The layer-norm LSTM with the input side's layer norm inside the loop (cell ``ln_lstm_x``)."""
    return CompiledLSTMKernel(x, params, save, input_ln=True)
