"""The bridge to ``gru.cpp``: the GRU and layer-norm GRU kernels whose time loop runs in C++.

The same mathematics and driver interface as the eager kernels of `rnnkit.nn.fast.gru`
(``GRUKernel``, ``LNGRUKernel``), but the kernel runs the whole time loop itself
(``forward_all`` / ``backward_all``, the loop of ``one_state_loop.h``) with the same per-step
products, masks and blends as the driver's Python loop, in the same order. Each step is one pass
over each batch row: the gates, ``n`` and ``h' = n + z ⊙ (h - n)`` forward; every local
derivative backward, with the layer norm's backward and this step's share of the gains' and
biases' gradients while the row is in cache.

Forward keeps ``r, z`` (T, B, 2H), ``n`` and ``gh_n`` (T, B, H), with layer norm
``â = (a - mean) rstd`` (T, B, 3H) and ``rstd`` (T, B); with ``save=False`` (no gradient
wanted) it keeps nothing and writes only the states. With ``input_ln`` (cell ``ln_gru_x``),
``gi`` arrives as ``W_ih x`` and each row becomes ``γ_ih ⊙ LN(W_ih x) + shift`` inside the loop,
which saves a pass over (T, B, 3H) arrays each way.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.nn.fast.compiled import one_state
from rnnkit.nn.fast.compiled.build import load
from rnnkit.nn.fast.ops import EPS
from rnnkit.nn.fast.workspace import Owner


class CompiledGRUKernel(Owner):
    """params: plain GRU (b_hh,); layer norm (γ_hh, b_hh); with ``input_ln`` (γ_hh, b_hh, γ_ih,
    shift). ``b_hh`` and ``shift`` may be None (``bias=False``)."""

    def __init__(self, gi: Tensor, params: tuple, save: bool = True, eps: float = EPS,
                 layer_norm: bool = False, input_ln: bool = False) -> None:
        ext = self.ext = load()
        T, B, G = gi.shape
        H = G // 3
        self.gi, self.ln, self.input_ln, self.save = gi, layer_norm, input_ln, save
        self.params = tuple(None if p is None else p.contiguous() for p in params)
        named = dict(zip(("gamma_hh", "b_hh", "gamma_ih", "shift") if layer_norm else ("b_hh",),
                         self.params))
        self.cell = ext.gru.Cell(layer_norm=layer_norm, eps=eps, **named)
        # what forward keeps for backward: nothing without save (empty tensors)
        kept = self.kept = {"rz": gi.new_empty(0), "n": gi.new_empty(0), "ghn": gi.new_empty(0)}
        if save:
            kept["rz"] = self.take((T, B, 2 * H), gi)  # σ(r), σ(z)
            kept["n"], kept["ghn"] = (self.take((T, B, H), gi) for _ in range(2))  # n, gh_n
            if layer_norm:
                kept |= {"ahat": self.take((T, B, G), gi), "rstd": self.take((T, B), gi)}
            if input_ln:
                kept["stat_x"] = self.take((2, T, B), gi)  # mean, rstd of W_ih x
        scratch = self.take((B, G), gi)  # one step's product a, where nothing kept holds it
        self.saved = ext.gru.Saved(scratch=scratch, **kept)

    def forward_all(self, reverse, S, prod, hidden_mask, keeps, NEW):
        """The forward over all steps. S: the (T + 1, B, H) state buffer (in a list); keeps:
        (keep_h, None); NEW: [the (T, B, H) buffer of the unblended new states], or None."""
        ext = self.ext
        ext.gru.forward_loop(self.cell, one_state.products(ext, prod, False),
                             one_state.masks(ext, hidden_mask, keeps), one_state.states(ext, S, NEW),
                             self.saved, self.gi, reverse, self.save)

    def prepare_backward(self, prev_all, new_all):
        T, B, G = self.gi.shape
        self.h_prev = prev_all[0]  # (T, B, H) the state each step read
        like = self.gi
        d_params = [None if p is None else torch.zeros_like(p) for p in self.params]
        kw = dict(zip(("d_gamma_hh", "d_b_hh", "d_gamma_ih", "d_shift") if self.ln else
                      ("d_b_hh",), d_params))
        # what autograd gets (dgi or dx, the parameters' gradients) is never from the pool
        if self.input_ln:  # the gradient of gi is one step's scratch; what backward returns is dx
            dgi = self.take((1, B, G), like)
            self.dx = torch.empty_like(like)  # (T, B, 3H) gradient of W_ih x
            kw |= {"dx": self.dx, "xhat": self.take((B, G), like)}
        else:
            dgi = torch.empty_like(like)  # (T, B, 3H) gradient of gi
        self.dgi, self.d_params = dgi, tuple(d_params)
        if self.ln:  # d gh is one step's scratch; da (the gradient of a) feeds d W_hh
            dgh, self.da = self.take((1, B, G), like), self.take((T, B, G), like)
        else:  # the plain GRU: a + b_hh = gh, so da is d gh (it only feeds d W_hh: pooled)
            dgh = self.da = self.take((T, B, G), like)
        self.grads = self.ext.gru.Grads(dgi=dgi, dgh=dgh, da=self.da, **kw)

    def backward_all(self, reverse, dy, d_final, prod, hidden_mask, keeps):
        """The backward over all steps; returns [the gradient on h0]."""
        ext = self.ext
        dh0 = ext.gru.backward_loop(self.cell, one_state.products(ext, prod, True),
                                    one_state.masks(ext, hidden_mask, keeps), self.saved,
                                    self.grads, self.gi, self.h_prev, dy, d_final[0], reverse)
        return [dh0]

    def finish(self):
        return self.dx if self.input_ln else self.dgi, self.da, self.d_params


def gru_kernel(gi: Tensor, params: tuple, save: bool = True) -> CompiledGRUKernel:
    """The plain GRU (cell ``gru``): params (b_hh,)."""
    return CompiledGRUKernel(gi, params, save)


def ln_gru_kernel(gi: Tensor, params: tuple, save: bool = True) -> CompiledGRUKernel:
    """The layer-norm GRU (cell ``ln_gru``): params (γ_hh, b_hh)."""
    return CompiledGRUKernel(gi, params, save, layer_norm=True)


def ln_gru_x_kernel(x: Tensor, params: tuple, save: bool = True) -> CompiledGRUKernel:
    """The layer-norm GRU with the input side's layer norm inside the loop (cell ``ln_gru_x``):
    params (γ_hh, b_hh, γ_ih, shift), ``x = W_ih x_t`` before its layer norm."""
    return CompiledGRUKernel(x, params, save, layer_norm=True, input_ln=True)
