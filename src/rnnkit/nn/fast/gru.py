"""The GRU and layer-norm GRU kernels for the fast path (eager ATen ops, hand-written BPTT).

GRU (torch.nn's form, gate order r, z, n): ``gh = a + b_hh`` with ``a = W_hh h_in``;
``r, z = σ(gi_rz + gh_rz)``; ``n = tanh(gi_n + r ⊙ gh_n)``; ``h' = n + z ⊙ (h - n)``.
LN-GRU (Ba et al. 2016): ``gh = γ_hh ⊙ LN(a) + b_hh``, then as the GRU. With the input side's
layer norm folded in (cell ``ln_gru_x``), ``gi`` arrives as ``W_ih x`` and becomes
``γ_ih ⊙ LN(W_ih x) + shift`` inside the kernel.

The kernel interface is described in `rnnkit.nn.fast.driver`. Shapes: T time, B batch,
H hidden; gi, gh (T, B, 3H).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.nn.fast.ops import (
    EPS,
    InputLayerNorm,
    layer_norm,
    layer_norm_backward,
    sigmoid_slope,
    tanh_slope,
)
from rnnkit.nn.fast.workspace import Owner


class GRUKernel(Owner):
    def __init__(self, gi: Tensor, params: tuple, save: bool = True) -> None:
        (self.b_hh,) = params
        T, B, G = gi.shape
        H = G // 3
        self.gi_rz, self.gi_n = gi[..., : 2 * H].unbind(0), gi[..., 2 * H :].unbind(0)
        self.gh = torch.empty_like(gi)  # (T, B, 3H): W_hh h_in + b_hh
        self.rz = gi.new_empty(T, B, 2 * H)  # σ(r), σ(z)
        self.n = gi.new_empty(T, B, H)
        self.gh_t, self.rz_t, self.n_t = self.gh.unbind(0), self.rz.unbind(0), self.n.unbind(0)
        self.r_t, self.z_t = self.rz[..., :H].unbind(0), self.rz[..., H:].unbind(0)

    def recurrent(self, t, h_in, prod):
        """gh = W_hh h_in + b_hh into gh[t]. (B, 3H)"""
        if self.b_hh is None:
            return self.gh_t[t].copy_(prod.mm(h_in, self.gh_t[t]))  # a no-op copy without MKL
        return prod.addmm(self.b_hh, h_in, self.gh_t[t])

    def forward_step(self, t, h_in, prod, prev, new):
        gh = self.recurrent(t, h_in, prod)  # (B, 3H)
        H = gh.shape[1] // 3
        rz = torch.add(self.gi_rz[t], gh[:, : 2 * H], out=self.rz_t[t]).sigmoid_()
        n = torch.addcmul(self.gi_n[t], rz[:, :H], gh[:, 2 * H :], out=self.n_t[t]).tanh_()
        torch.lerp(n, prev[0], rz[:, H:], out=new[0])  # h' = n + z (h - n)

    def prepare_backward(self, prev_all, new_all):
        T, B, H = self.n.shape
        if not hasattr(self, "Q"):  # once, even if backward runs twice (retain_graph=True)
            (h_prev,) = prev_all
            r, z, n = self.rz[..., :H], self.rz[..., H:], self.n
            Q = self.n.new_empty(T, B, 3, H)  # d gi = [da_n, dh, dh] ⊙ Q, da_n = dh Q_n
            sigmoid_slope(r, Q[:, :, 0]).mul_(self.gh[..., 2 * H :])  # r(1-r) gh_n
            sigmoid_slope(z, Q[:, :, 1]).mul_(h_prev - n)  # z(1-z) (h - n)
            tanh_slope(n, Q[:, :, 2]).mul_(1 - z)  # (1-n^2)(1-z)
            R = torch.ones_like(Q)  # da = d gi ⊙ [1, 1, r]: d gh_n = da_n r
            R[:, :, 2] = r
            self.Q, self.Q_t, self.Qn_t = Q, Q.unbind(0), Q[:, :, 2].unbind(0)
            self.R_t = R.unbind(0)
        self.M = self.n.new_empty(B, 3, H)  # workspace: [da_n, dh, dh]
        self.dgi = self.n.new_empty(T, B, 3, H)
        self.dgh = self.n.new_empty(T, B, 3, H)
        self.dgi_t, self.dgh_t = self.dgi.unbind(0), self.dgh.unbind(0)

    def backward_step(self, t, d_new):
        (dh,) = d_new
        B = dh.shape[0]
        dan = dh * self.Qn_t[t]  # (B, H)
        torch.stack((dan, dh, dh), 1, out=self.M)
        dgi = torch.mul(self.M, self.Q_t[t], out=self.dgi_t[t])  # (B, 3, H)
        dgh = torch.mul(dgi, self.R_t[t], out=self.dgh_t[t])
        return dgh.view(B, -1), (dh * self.z_t[t],)

    def finish(self):
        T, B = self.dgi.shape[:2]
        dgi, dgh = self.dgi.view(T, B, -1), self.dgh.view(T, B, -1)
        return dgi, dgh, (None if self.b_hh is None else dgh.sum((0, 1)),)


class LNGRUKernel(GRUKernel):
    """GRU with ``gh = γ_hh LN(a) + b_hh``; params (γ_hh, b_hh)."""

    def __init__(self, gi: Tensor, params: tuple, save: bool = True, eps: float = EPS) -> None:
        self.gamma_hh, b_hh = params
        super().__init__(gi, (b_hh,))
        self.eps = eps
        self.a = torch.empty_like(gi)  # (T, B, 3H) recurrent pre-activation before LN
        self.a_t = list(self.a.unbind(0))
        self.stats = [None] * gi.shape[0]

    def recurrent(self, t, h_in, prod):
        a = self.a_t[t] = prod.mm(h_in, self.a_t[t])  # keep what mm returns (see Products)
        gh, mean, rstd = layer_norm(a, self.eps, self.gamma_hh, self.b_hh)  # γ_hh LN(a) + b_hh
        self.stats[t] = (mean, rstd)
        return self.gh_t[t].copy_(gh)

    def prepare_backward(self, prev_all, new_all):
        super().prepare_backward(prev_all, new_all)
        T = len(self.a_t)
        self.da, self.d_gamma_hh, self.d_b_hh = ([None] * T for _ in range(3))

    def backward_step(self, t, d_new):
        dgh, dprev = super().backward_step(t, d_new)  # d gh (B, 3H)
        mean, rstd = self.stats[t]
        da, self.d_gamma_hh[t], self.d_b_hh[t] = layer_norm_backward(
            dgh, self.a_t[t], mean, rstd, self.gamma_hh, True, self.b_hh)
        self.da[t] = da
        return da, dprev

    def finish(self):
        T, B = self.dgi.shape[:2]
        d_b = None if self.b_hh is None else torch.stack(self.d_b_hh).sum(0)
        grads = (torch.stack(self.d_gamma_hh).sum(0), d_b)  # γ_hh, b_hh
        return self.dgi.view(T, B, -1), torch.stack(self.da), grads


class InputLNGRUKernel(InputLayerNorm, LNGRUKernel):
    """``ln_gru_x`` on the eager kernel: params (γ_hh, b_hh, γ_ih, shift); ``x = W_ih x_t``
    (see `rnnkit.nn.fast.ops.InputLayerNorm`). ``b_hh`` and ``shift`` may be None."""
