"""The LSTM and layer-norm LSTM kernels for the fast path (eager ATen ops, hand-written BPTT).

LSTM (torch.nn's form, gate order i, f, g, o; ``a = W_hh h_in``, ``gi = W_ih x + b_ih + b_hh``):

    [i, f, g, o] = gi + a;   c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g);   h' = σ(o) ⊙ tanh(c')

LN-LSTM (Ba et al. 2016): ``gates = gi + γ_hh ⊙ LN(a)``; ``h' = σ(o) ⊙ tanh(γ_c ⊙ LN(c') + β_c)``.
``LN(v) = (v - mean(v)) / sqrt(var(v) + eps)`` over the last axis, without a gain of its own.
With the input side's layer norm folded in (cell ``ln_lstm_x``), ``gi`` arrives as ``W_ih x`` and
becomes ``γ_ih ⊙ LN(W_ih x) + shift`` inside the kernel.

The backward uses the formulas of ``rnnkit.scratch``: every local derivative that depends only on
forward values is computed for all T steps at once before the loop (a few large elementwise
products); per step only ``da_t`` from the incoming state gradient. The kernel interface is
described in `rnnkit.nn.fast.driver`. Shapes: T time, B batch, H hidden, gates (T, B, 4H).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.nn.fast.ops import (
    EPS,
    InputLayerNorm,
    layer_norm,
    layer_norm_backward,
    per_step,
    sigmoid_slope,
    tanh_slope,
)
from rnnkit.nn.fast.workspace import Owner


class LSTMKernel(Owner):
    def __init__(self, gi: Tensor, params: tuple, save: bool = True) -> None:
        T, B, G = gi.shape
        H = G // 4
        # save=False (no gradient wanted): nothing is kept for backward, so every step works in
        # the same one-step buffers, which stay in cache, instead of T fresh rows of memory
        R = T if save else 1
        self.gi = gi.unbind(0)
        self.act = self.take((R, B, G), gi)  # (T, B, 4H): σ(i), σ(f), (unused), σ(o)
        self.g = self.take((R, B, H), gi)  # (T, B, H): tanh(g)
        self.y = self.take((R, B, H), gi)  # (T, B, H): tanh(c_t) (LN-LSTM: tanh(γ_c LN(c_t) + β_c))
        self.act_t, self.g_t, self.y_t = (per_step(b, T) for b in (self.act, self.g, self.y))
        a4 = self.act.view(R, B, 4, H)
        self.i_t, self.f_t, self.gpre_t, self.o_t = (per_step(a4[:, :, k], T) for k in range(4))

    def gates(self, t, h_in, prod):
        """Gate pre-activations into act[t]: gi + W_hh h_in."""
        return prod.addmm(self.gi[t], h_in, self.act_t[t])

    def cell_out(self, t, c_new):
        """y_t from c_t: tanh(c_t)."""
        return torch.tanh(c_new, out=self.y_t[t])

    def forward_step(self, t, h_in, prod, prev, new):
        act = self.gates(t, h_in, prod)
        g = torch.tanh(self.gpre_t[t], out=self.g_t[t])
        act.sigmoid_()  # all four blocks in one contiguous op; the g block is not used after
        c_new = torch.mul(self.f_t[t], prev[1], out=new[1]).addcmul_(self.i_t[t], g)
        torch.mul(self.o_t[t], self.cell_out(t, c_new), out=new[0])  # h' = o y

    def prepare_backward(self, prev_all, new_all):
        T, B, H = self.y.shape
        if not hasattr(self, "P"):  # once, even if backward runs twice (retain_graph=True)
            i, f, _, o = self.act.view(T, B, 4, H).unbind(2)
            g, y = self.g, self.y
            # da = [dc, dc, dc, dh] ⊙ P, P the local derivatives (scratch's formulas), all T at once
            P = self.take((T, B, 4, H), self.act)
            sigmoid_slope(i, P[:, :, 0]).mul_(g)  # i(1-i) g
            sigmoid_slope(f, P[:, :, 1]).mul_(prev_all[1])  # f(1-f) c_{t-1}
            tanh_slope(g, P[:, :, 2]).mul_(i)  # (1-g^2) i
            sigmoid_slope(o, P[:, :, 3]).mul_(y)  # o(1-o) y
            self.K = tanh_slope(y, self.take(y.shape, y)).mul_(o)  # dc += dh K: via h' = o y
            self.P, self.P_t, self.K_t, self.f = P, P.unbind(0), self.K.unbind(0), f.unbind(0)
        self.M = self.act.new_empty(B, 4, H)  # workspace: [dc, dc, dc, dh]
        self.dg = torch.empty_like(self.act)  # (T, B, 4H) grad of the gates (= of gi)
        self.dg_t = self.dg.view(T, B, 4, H).unbind(0)

    def gate_grads(self, t, dh, dc):
        """d gates_t = [dc, dc, dc, dh] ⊙ P_t, written to dg[t] (B, 4, H)."""
        torch.stack((dc, dc, dc, dh), 1, out=self.M)
        return torch.mul(self.P_t[t], self.M, out=self.dg_t[t])

    def backward_step(self, t, d_new):
        dh, dc = d_new
        dc = torch.addcmul(dc, dh, self.K_t[t])  # (B, H)
        dg = self.gate_grads(t, dh, dc)
        return dg.view(dg.shape[0], -1), (None, dc * self.f[t])

    def finish(self):
        return self.dg, self.dg, ()


class LNLSTMKernel(LSTMKernel):
    """LSTM with ``gates = gi + γ_hh LN(a)`` and ``h' = σ(o) tanh(γ_c LN(c') + β_c)``.

    params (γ_hh, γ_c, β_c). Forward keeps ``a = W_hh h_in`` and the LN statistics of each step
    (two (B, 1) tensors); the LN backward kernel gives the gain and shift gradients of each step
    along with ``da``.
    """

    def __init__(self, gi: Tensor, params: tuple, save: bool = True, eps: float = EPS) -> None:
        super().__init__(gi, params, save)
        self.gamma_hh, self.gamma_c, self.beta_c = params
        self.eps = eps
        T = gi.shape[0]
        self.a = self.take((T if save else 1, *gi.shape[1:]), gi)  # (T, B, 4H) W_hh h_in, pre-LN
        self.a_t = list(per_step(self.a, T))
        self.stats_a, self.stats_c = [None] * T, [None] * T  # (mean, rstd) per step, (B, 1) each

    def gates(self, t, h_in, prod):
        a = self.a_t[t] = prod.mm(h_in, self.a_t[t])  # keep what mm returns (see Products)
        ln_a, mean, rstd = layer_norm(a, self.eps, self.gamma_hh)  # γ_hh LN(a)
        self.stats_a[t] = (mean, rstd)
        return torch.add(self.gi[t], ln_a, out=self.act_t[t])

    def cell_out(self, t, c_new):
        ln_c, mean, rstd = layer_norm(c_new, self.eps, self.gamma_c, self.beta_c)
        self.stats_c[t] = (mean, rstd)
        return torch.tanh(ln_c, out=self.y_t[t])  # tanh(γ_c LN(c') + β_c)

    def prepare_backward(self, prev_all, new_all):
        super().prepare_backward(prev_all, new_all)  # with y = tanh(LN_c(c)): K = o(1-y^2), P_o
        self.c_t = new_all[1].unbind(0)
        T = len(self.a_t)
        self.da, self.d_gamma_hh, self.d_gamma_c, self.d_beta_c = ([None] * T for _ in range(4))

    def backward_step(self, t, d_new):
        dh, dc = d_new
        d_pre = dh * self.K_t[t]  # (B, H) gradient of γ_c ĉ + β_c
        mean, rstd = self.stats_c[t]
        dc_ln, self.d_gamma_c[t], self.d_beta_c[t] = layer_norm_backward(
            d_pre, self.c_t[t], mean, rstd, self.gamma_c, True, self.beta_c)
        dc = dc_ln.add_(dc)
        dg = self.gate_grads(t, dh, dc).view(dh.shape[0], -1)  # (B, 4H)
        mean, rstd = self.stats_a[t]
        da, self.d_gamma_hh[t], _ = layer_norm_backward(
            dg, self.a_t[t], mean, rstd, self.gamma_hh, True)
        self.da[t] = da
        return da, (None, dc * self.f[t])

    def finish(self):
        grads = tuple(torch.stack(g).sum(0) for g in (self.d_gamma_hh, self.d_gamma_c,
                                                      self.d_beta_c))  # γ_hh, γ_c, β_c
        da = torch.stack(self.da, out=self.take((len(self.da), *self.da[0].shape), self.dg))
        return self.dg, da, grads  # da only feeds d W_hh, so its buffer can go back to the pool


class InputLNLSTMKernel(InputLayerNorm, LNLSTMKernel):
    """``ln_lstm_x`` on the eager kernel: params (γ_hh, γ_c, β_c, γ_ih, shift);
    ``x = W_ih x_t`` (see `rnnkit.nn.fast.ops.InputLayerNorm`)."""
