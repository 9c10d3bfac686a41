"""The fused recurrence: one ``torch.autograd.Function`` per sequence, with hand-written BPTT.

A Python loop over a cell written with autograd records ~10 small ops per step and replays them one
by one in backward, and its weight gradient is ``T`` small matrix products. Here the forward runs the
time loop itself, writing into preallocated buffers only what the backward needs, and the backward is
backpropagation through time written out by hand (the formulas of ``rnnkit.scratch``):

* per step, only the work that truly depends on the previous step: ``da_t`` from the incoming state
  gradient and ``dh_{t-1} = da_t W_hh``;
* every factor that depends only on forward values (``f(1-f) c_{t-1}``, ``1 - tanh(c)^2``...) is
  computed for all T steps at once before the loop, as a few large elementwise products;
* the weight gradient is ONE matrix product over all time steps: ``dW_hh = da^T h_in`` with ``da``
  ``(T*B, G)`` and ``h_in`` ``(T*B, H)``; the same for biases and layer-norm gains (one reduction).

The input projection ``gi = W_ih x + b`` is not part of the Function: the caller computes it for all
steps in one matrix product (autograd then also does its backward as one product).

Cells (gate orders as ``torch.nn``; ``a = W_hh h_in`` is the recurrent pre-activation):

* Elman: ``h' = σ(gi + a)``, σ = tanh or relu.
* LSTM:  ``[i,f,g,o] = gi + a``; ``c' = σ(f) c + σ(i) tanh(g)``; ``h' = σ(o) tanh(c')``.
* GRU:   ``gh = a + b_hh``; ``r, z = σ(gi_rz + gh_rz)``; ``n = tanh(gi_n + r gh_n)``;
  ``h' = n + z (h - n)``.
* LN-LSTM (Ba et al. 2016): ``gates = gi + γ_hh ⊙ LN(a)``; ``h' = σ(o) tanh(γ_c ⊙ LN(c') + β_c)``.
* LN-GRU: ``gh = γ_hh ⊙ LN(a) + b_hh``, then as GRU.

``LN(v) = (v - mean(v)) / sqrt(var(v) + eps)`` over the last axis (4H, 3H or H), without its own
gain; the gains ``γ`` are separate parameters (see ``rnnkit.nn.layernorm``).

Masks, all optional, all constants (the caller draws them; see ``rnnkit.nn.dropout``):

* ``hidden_mask`` (B, H): variational dropout (Gal & Ghahramani 2016): ``h_in = h ⊙ m``, the same
  mask at every step; only the input of ``W_hh`` is dropped, never the carried state.
* ``keep`` (T, B, 1 or H) per state tensor: ``s_t = s_{t-1} + k_t ⊙ (s'_t - s_{t-1})``. ``k = 1``
  is the plain update; lengths give ``k = 0`` past each sequence's end (the state is held);
  zoneout (Krueger et al. 2017) gives Bernoulli ``k`` in training and ``k = 1 - p`` in eval.
* ``valid`` (T, B, 1): the output is ``y_t = valid_t ⊙ h_t`` (zero past each sequence's end).

``reverse=True`` runs from ``t = T-1`` down to 0 (with lengths as masks this is exactly what
``pack_padded_sequence`` gives for the backward direction).

Shapes: T time, B batch, H hidden, G = gates * H. ``gi`` (T, B, G), states (B, H), output (T, B, H).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.nn.cells import lstm_step, rnn_step
from rnnkit.nn.dropout import check_probability, drop_connect, variational_mask, zoneout_keep
from rnnkit.nn.layers import GRU, LSTM, RNN

EPS = 1e-5  # layer-norm epsilon, as torch.nn.LayerNorm


def _ln(a: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Normalise over the last axis without gain: returns (a_hat, rstd (..., 1))."""
    a_hat, _, rstd = torch.native_layer_norm(a, a.shape[-1:], None, None, eps)
    return a_hat, rstd


def _ln_backward(d_hat: Tensor, a_hat: Tensor, rstd: Tensor) -> Tensor:
    """Gradient through ``a_hat = (a - mean) * rstd``: ``rstd (d - mean(d) - a_hat mean(d a_hat))``."""
    m1 = d_hat.mean(-1, keepdim=True)
    m2 = (d_hat * a_hat).mean(-1, keepdim=True)
    return (d_hat - m1).sub_(a_hat * m2).mul_(rstd)


# --------------------------------------------------------------------------------------------------
# Kernels: one cell's step and its backward. The driver (_Recurrence) owns time, masks and W_hh.
#
#   forward_step(t, h_in, prev, new)   reads gi[t], writes the new states into `new` (a tuple of
#                                      (B, H) views) and saves what backward needs at index t
#   prepare_backward(prev_all, new_all) bulk precomputation over all T, before the loop
#   backward_step(t, d_new, da_t)      writes da_t (grad of a_t = h_in W^T) and self.dgi[t];
#                                      returns the direct gradients on the previous states
#   param_grads(da)                    gradients of the cell's own parameters, one reduction each
# --------------------------------------------------------------------------------------------------


class _ElmanKernel:
    n_state = 1
    gates = 1

    def __init__(self, gi: Tensor, params: tuple, relu: bool) -> None:
        self.gi, self.relu = gi, relu
        self.dgi = None  # Elman: dgi is da itself

    def forward_step(self, t, h_in, w_t, prev, new):
        (h_new,) = new
        torch.addmm(self.gi[t], h_in, w_t, out=h_new)  # (B, H)
        h_new.relu_() if self.relu else h_new.tanh_()

    def prepare_backward(self, prev_all, new_all):
        (h,) = new_all  # (T, B, H)
        self.deriv = (h > 0).to(h.dtype) if self.relu else 1 - h * h  # σ'(pre) from σ's output

    def backward_step(self, t, d_new, da_t):
        torch.mul(d_new[0], self.deriv[t], out=da_t)
        return (None,)

    def param_grads(self, da):
        return ()


class _LSTMKernel:
    n_state = 2
    gates = 4

    def __init__(self, gi: Tensor, params: tuple) -> None:
        self.gi = gi
        self.act = torch.empty_like(gi)  # (T, B, 4H): i, f, g, o after their nonlinearities
        self.tc = torch.empty_like(gi[..., : gi.shape[-1] // 4])  # (T, B, H): tanh(c_t)
        self.dgi = None  # LSTM: dgi is da itself

    def forward_step(self, t, h_in, w_t, prev, new):
        H = h_in.shape[1]
        c_prev = prev[1]
        h_new, c_new = new
        act = self.act[t]
        torch.addmm(self.gi[t], h_in, w_t, out=act)  # (B, 4H) pre-activations
        act[:, : 2 * H].sigmoid_()
        act[:, 2 * H : 3 * H].tanh_()
        act[:, 3 * H :].sigmoid_()
        i, f, g, o = act[:, :H], act[:, H : 2 * H], act[:, 2 * H : 3 * H], act[:, 3 * H :]
        torch.mul(f, c_prev, out=c_new).addcmul_(i, g)  # c' = f c + i g
        torch.tanh(c_new, out=self.tc[t])
        torch.mul(o, self.tc[t], out=h_new)  # h' = o tanh(c')

    def prepare_backward(self, prev_all, new_all):
        if hasattr(self, "P"):  # a second backward through the same graph (retain_graph=True)
            return
        H = self.tc.shape[-1]
        c_prev = prev_all[1]  # (T, B, H)
        i, f, g, o = self.act.split(H, dim=-1)
        tc = self.tc
        # da = [dc, dc, dc, dh] * P with P the local derivatives (scratch's formulas), all T at once
        P = torch.empty_like(self.act)
        P[..., :H] = g * i * (1 - i)
        P[..., H : 2 * H] = c_prev * f * (1 - f)
        P[..., 2 * H : 3 * H] = i * (1 - g * g)
        P[..., 3 * H :] = tc * o * (1 - o)
        self.P = P.view(*P.shape[:2], 4, H)  # (T, B, 4, H)
        self.K = o * (1 - tc * tc)  # dc += dh * K: the path through h' = o tanh(c')
        self.f = f.contiguous()

    def backward_step(self, t, d_new, da_t):
        dh, dc = d_new
        dc = torch.addcmul(dc, dh, self.K[t]) if dc is not None else dh * self.K[t]  # (B, H)
        da4 = da_t.view(-1, 4, da_t.shape[1] // 4)  # (B, 4, H)
        torch.mul(self.P[t, :, :3], dc.unsqueeze(1), out=da4[:, :3])
        torch.mul(self.P[t, :, 3], dh, out=da4[:, 3])
        return (None, dc * self.f[t])

    def param_grads(self, da):
        return ()


class _GRUKernel:
    n_state = 1
    gates = 3

    def __init__(self, gi: Tensor, params: tuple) -> None:
        (self.b_hh,) = params
        self.gi = gi
        T, B, G = gi.shape
        self.rz = torch.empty(T, B, 2 * G // 3, dtype=gi.dtype, device=gi.device)  # r, z
        self.n = torch.empty(T, B, G // 3, dtype=gi.dtype, device=gi.device)
        self.ghn = torch.empty_like(self.n)  # gh_n = (W_hh h_in + b_hh)_n, needed for dr
        self.dgi = None  # GRU: dgi differs from da in the n block (r gh_n); made in backward

    def gh(self, t, h_in, w_t):
        """Recurrent pre-activation gh = W_hh h_in + b_hh. (B, 3H)"""
        if self.b_hh is None:
            return torch.mm(h_in, w_t)
        return torch.addmm(self.b_hh, h_in, w_t)

    def forward_step(self, t, h_in, w_t, prev, new):
        H = h_in.shape[1]
        (h_prev,), (h_new,) = prev, new
        gi = self.gi[t]
        gh = self.gh(t, h_in, w_t)  # (B, 3H)
        rz = torch.add(gi[:, : 2 * H], gh[:, : 2 * H], out=self.rz[t]).sigmoid_()
        r, z = rz[:, :H], rz[:, H:]
        self.ghn[t] = gh[:, 2 * H :]
        n = torch.addcmul(gi[:, 2 * H :], r, gh[:, 2 * H :], out=self.n[t]).tanh_()
        torch.sub(h_prev, n, out=h_new).mul_(z).add_(n)  # h' = n + z (h - n)

    def prepare_backward(self, prev_all, new_all):
        self.dgi = torch.empty_like(self.gi)  # fresh for every backward call
        if hasattr(self, "Qn"):
            return
        H = self.n.shape[-1]
        (h_prev,) = prev_all
        r, z, n = self.rz[..., :H], self.rz[..., H:], self.n
        self.Qn = (1 - z) * (1 - n * n)  # da_n = dh (1-z)(1-n^2)
        self.Qz = (h_prev - n) * z * (1 - z)  # da_z = dh (h - n) z(1-z)
        self.Qr = self.ghn * r * (1 - r)  # da_r = da_n gh_n r(1-r)
        self.r, self.z = r.contiguous(), z.contiguous()

    def backward_step(self, t, d_new, da_t):
        H = self.Qn.shape[-1]
        (dh,) = d_new
        dgi = self.dgi[t]
        dan = torch.mul(dh, self.Qn[t], out=dgi[:, 2 * H :])  # (B, H)
        torch.mul(dan, self.Qr[t], out=dgi[:, :H])
        torch.mul(dh, self.Qz[t], out=dgi[:, H : 2 * H])
        da_t[:, : 2 * H] = dgi[:, : 2 * H]
        torch.mul(dan, self.r[t], out=da_t[:, 2 * H :])  # d gh_n = da_n r
        return (dh * self.z[t],)

    def param_grads(self, da):
        return (None if self.b_hh is None else da.sum((0, 1)),)


class _LNLSTMKernel(_LSTMKernel):
    """LSTM with ``gates = gi + γ_hh LN(a)`` and ``h' = σ(o) tanh(γ_c LN(c') + β_c)``."""

    def __init__(self, gi: Tensor, params: tuple, eps: float = EPS) -> None:
        super().__init__(gi, params)
        self.g_hh, self.g_c, self.b_c = params
        self.eps = eps
        T, B, _ = gi.shape
        self.a_hat = torch.empty_like(gi)  # (T, B, 4H) LN(a)
        self.rstd_a = gi.new_empty(T, B, 1)
        self.c_hat = torch.empty_like(self.tc)  # (T, B, H) LN(c')
        self.rstd_c = gi.new_empty(T, B, 1)

    def forward_step(self, t, h_in, w_t, prev, new):
        H = h_in.shape[1]
        c_prev = prev[1]
        h_new, c_new = new
        a_hat, rstd = _ln(torch.mm(h_in, w_t), self.eps)  # (B, 4H)
        self.a_hat[t], self.rstd_a[t] = a_hat, rstd
        act = torch.addcmul(self.gi[t], a_hat, self.g_hh, out=self.act[t])  # (B, 4H) gates
        act[:, : 2 * H].sigmoid_()
        act[:, 2 * H : 3 * H].tanh_()
        act[:, 3 * H :].sigmoid_()
        i, f, g, o = act[:, :H], act[:, H : 2 * H], act[:, 2 * H : 3 * H], act[:, 3 * H :]
        torch.mul(f, c_prev, out=c_new).addcmul_(i, g)  # c' = f c + i g
        c_hat, rstd_c = _ln(c_new, self.eps)
        self.c_hat[t], self.rstd_c[t] = c_hat, rstd_c
        y = torch.addcmul(self.b_c, c_hat, self.g_c, out=self.tc[t]).tanh_()  # y = tanh(γ_c ĉ + β_c)
        torch.mul(o, y, out=h_new)

    def prepare_backward(self, prev_all, new_all):
        super().prepare_backward(prev_all, new_all)  # with tc = y: K = o (1 - y^2), P_o = y o(1-o)
        self.d_pre = torch.empty_like(self.K)  # (T, B, H) grad of γ_c ĉ + β_c, for γ_c and β_c
        self.dgi = torch.empty_like(self.a_hat)  # (T, B, 4H) grad of the gates = grad of gi

    def backward_step(self, t, d_new, da_t):
        dh, dc = d_new
        d_pre = torch.mul(dh, self.K[t], out=self.d_pre[t])  # (B, H)
        dc = _ln_backward(d_pre * self.g_c, self.c_hat[t], self.rstd_c[t]).add_(dc)
        dg = self.dgi[t]  # (B, 4H)
        dg4 = dg.view(-1, 4, dg.shape[1] // 4)
        torch.mul(self.P[t, :, :3], dc.unsqueeze(1), out=dg4[:, :3])
        torch.mul(self.P[t, :, 3], dh, out=dg4[:, 3])
        da_t.copy_(_ln_backward(dg * self.g_hh, self.a_hat[t], self.rstd_a[t]))
        return (None, dc * self.f[t])

    def param_grads(self, da):
        return (
            (self.dgi * self.a_hat).sum((0, 1)),  # γ_hh
            (self.d_pre * self.c_hat).sum((0, 1)),  # γ_c
            self.d_pre.sum((0, 1)),  # β_c
        )


class _LNGRUKernel(_GRUKernel):
    """GRU with ``gh = γ_hh LN(a) + b_hh``."""

    def __init__(self, gi: Tensor, params: tuple, eps: float = EPS) -> None:
        self.g_hh, b_hh = params
        super().__init__(gi, (b_hh,))
        self.eps = eps
        T, B, _ = gi.shape
        self.a_hat = torch.empty_like(gi)  # (T, B, 3H) LN(a)
        self.rstd_a = gi.new_empty(T, B, 1)

    def gh(self, t, h_in, w_t):
        a_hat, rstd = _ln(torch.mm(h_in, w_t), self.eps)  # (B, 3H)
        self.a_hat[t], self.rstd_a[t] = a_hat, rstd
        if self.b_hh is None:
            return a_hat * self.g_hh
        return torch.addcmul(self.b_hh, a_hat, self.g_hh)

    def prepare_backward(self, prev_all, new_all):
        super().prepare_backward(prev_all, new_all)
        self.dgh = torch.empty_like(self.a_hat)  # (T, B, 3H) grad of gh, for γ_hh and b_hh

    def backward_step(self, t, d_new, da_t):
        dprev = super().backward_step(t, d_new, self.dgh[t])  # writes d gh
        da_t.copy_(_ln_backward(self.dgh[t] * self.g_hh, self.a_hat[t], self.rstd_a[t]))
        return dprev

    def param_grads(self, da):
        return (
            (self.dgh * self.a_hat).sum((0, 1)),  # γ_hh
            None if self.b_hh is None else self.dgh.sum((0, 1)),  # b_hh
        )


# --------------------------------------------------------------------------------------------------
# The driver: time, direction, masks and W_hh; the same for every cell.
# --------------------------------------------------------------------------------------------------

#: cell name -> (kernel factory, number of state tensors, gates per hidden unit, parameter names)
CELLS = {
    "rnn_tanh": (lambda gi, p: _ElmanKernel(gi, p, relu=False), 1, 1, ()),
    "rnn_relu": (lambda gi, p: _ElmanKernel(gi, p, relu=True), 1, 1, ()),
    "lstm": (_LSTMKernel, 2, 4, ()),
    "gru": (_GRUKernel, 1, 3, ("b_hh",)),
    "ln_lstm": (_LNLSTMKernel, 2, 4, ("g_hh", "g_c", "b_c")),
    "ln_gru": (_LNGRUKernel, 1, 3, ("g_hh", "b_hh")),
}


class _Recurrence(torch.autograd.Function):
    """forward(cell, reverse, gi, w_hh, hidden_mask, valid, keep_h, keep_c, *states, *params)."""

    @staticmethod
    def forward(ctx, cell, reverse, gi, w_hh, hidden_mask, valid, keep_h, keep_c, *rest):
        make, n_state, _, _ = CELLS[cell]
        states, params = rest[:n_state], rest[n_state:]
        kernel = make(gi, params)
        T, B, _ = gi.shape
        H = w_hh.shape[1]
        keeps = (keep_h, keep_c)[:n_state]
        blend = any(k is not None for k in keeps)
        # S[k][j]: state k between steps. Forward: step t reads j = t, writes j = t + 1; reverse:
        # reads j = t + 1, writes j = t. So S[:-1] / S[1:] line up with t either way.
        S = [gi.new_empty(T + 1, B, H) for _ in range(n_state)]
        for s, s0 in zip(S, states):
            s[T if reverse else 0] = s0
        NEW = [gi.new_empty(T, B, H) for _ in range(n_state)] if blend else None
        w_t = w_hh.t()  # (H, G)
        for t in range(T - 1, -1, -1) if reverse else range(T):
            j_prev, j_new = (t + 1, t) if reverse else (t, t + 1)
            prev = tuple(s[j_prev] for s in S)
            h_in = prev[0] * hidden_mask if hidden_mask is not None else prev[0]
            if not blend:
                kernel.forward_step(t, h_in, w_t, prev, tuple(s[j_new] for s in S))
                continue
            new = tuple(n[t] for n in NEW)
            kernel.forward_step(t, h_in, w_t, prev, new)
            for k, keep in enumerate(keeps):  # s_t = s_{t-1} + k_t (s'_t - s_{t-1})
                if keep is None:
                    S[k][j_new] = new[k]
                else:
                    torch.lerp(prev[k], new[k], keep[t], out=S[k][j_new])

        ctx.kernel, ctx.S, ctx.NEW, ctx.cell, ctx.reverse = kernel, S, NEW, cell, reverse
        ctx.save_for_backward(w_hh, hidden_mask, valid, keep_h, keep_c)
        out = S[0][:-1] if reverse else S[0][1:]  # (T, B, H)
        out = out * valid if valid is not None else out.clone()
        j_last = 0 if reverse else T
        return (out, *(s[j_last].clone() for s in S))

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, *d_final):
        w_hh, hidden_mask, valid, keep_h, keep_c = ctx.saved_tensors
        kernel, S, NEW, reverse = ctx.kernel, ctx.S, ctx.NEW, ctx.reverse
        _, n_state, _, pnames = CELLS[ctx.cell]
        T, B, H = dy.shape
        G = w_hh.shape[0]
        keeps = (keep_h, keep_c)[:n_state]
        prev_all = tuple(s[1:] if reverse else s[:-1] for s in S)  # (T, B, H) each
        new_all = NEW if NEW is not None else tuple(s[:-1] if reverse else s[1:] for s in S)
        kernel.prepare_backward(prev_all, new_all)
        if valid is not None:
            dy = dy * valid
        da = dy.new_empty(T, B, G)  # grad of a_t = h_in W_hh^T, all steps: one dW_hh product
        ds = list(d_final)  # grads on the state after the current step
        for t in range(T) if reverse else range(T - 1, -1, -1):
            ds[0] = ds[0] + dy[t]
            if NEW is not None:
                d_new = tuple(d if k is None else d * k[t] for d, k in zip(ds, keeps))
                d_hold = [None if k is None else d - dn for d, dn, k in zip(ds, d_new, keeps)]
            else:
                d_new, d_hold = tuple(ds), [None] * n_state
            d_direct = kernel.backward_step(t, d_new, da[t])
            dh_in = torch.mm(da[t], w_hh)  # (B, H)
            if hidden_mask is not None:
                dh_in.mul_(hidden_mask)
            sums = []
            for k in range(n_state):  # state k before step t: through W_hh (h only), the cell, holds
                acc = dh_in if k == 0 else None
                for extra in (d_direct[k], d_hold[k]):
                    if extra is not None:
                        acc = extra if acc is None else acc + extra
                sums.append(acc if acc is not None else torch.zeros_like(ds[k]))
            ds = sums
        h_in_all = prev_all[0] * hidden_mask if hidden_mask is not None else prev_all[0]
        d_w_hh = torch.mm(da.reshape(T * B, G).t(), h_in_all.reshape(T * B, H))  # (G, H)
        d_gi = kernel.dgi if kernel.dgi is not None else da
        p_grads = kernel.param_grads(da)
        assert len(p_grads) == len(pnames)
        return (None, None, d_gi, d_w_hh, None, None, None, None, *ds, *p_grads)


def _as_keep(keep, n_state: int) -> tuple:
    if keep is None:
        return (None, None)
    if isinstance(keep, Tensor):
        return (keep, keep if n_state == 2 else None)
    keep = tuple(keep) + (None,) * (2 - len(keep))
    return keep[:2]


def fused_recurrence(
    cell: str,
    gi: Tensor,
    state: tuple[Tensor, ...],
    w_hh: Tensor,
    params: tuple[Tensor | None, ...] = (),
    *,
    reverse: bool = False,
    hidden_mask: Tensor | None = None,
    keep: Tensor | tuple[Tensor | None, ...] | None = None,
    valid: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run one direction of one layer through the fused Function.

    cell: one of ``CELLS`` (``rnn_tanh``, ``rnn_relu``, ``lstm``, ``gru``, ``ln_lstm``, ``ln_gru``).
    gi (T, B, G): input projections (for rnn/lstm/ln_lstm with both biases folded in; for gru and
    ln_gru with ``b_ih`` only). state: (h0,) or (h0, c0), each (B, H). w_hh (G, H). params: the
    cell's extra tensors in ``CELLS`` order (gru: ``b_hh``; ln_lstm: ``γ_hh, γ_c, β_c``; ln_gru:
    ``γ_hh, b_hh``). hidden_mask (B, H); keep (T, B, 1 or H) or a tuple per state; valid (T, B, 1).
    Returns (out (T, B, H), final state tuple).
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(map(repr, CELLS))}; got {cell!r}")
    _, n_state, gates, pnames = CELLS[cell]
    if len(state) != n_state:
        raise ValueError(f"cell {cell!r} takes {n_state} state tensor(s), got {len(state)}")
    if len(params) != len(pnames):
        raise ValueError(
            f"cell {cell!r} takes params ({', '.join(pnames)}), got {len(params)} tensor(s)"
        )
    if gi.dim() != 3 or gi.shape[-1] != w_hh.shape[0] or w_hh.shape[0] != gates * w_hh.shape[1]:
        raise ValueError(
            f"cell {cell!r}: expected gi (T, B, {gates}H) and w_hh ({gates}H, H); "
            f"got gi {list(gi.shape)} and w_hh {list(w_hh.shape)}"
        )
    keep_h, keep_c = _as_keep(keep, n_state)
    out, *final = _Recurrence.apply(
        cell, reverse, gi.contiguous(), w_hh, hidden_mask, valid, keep_h, keep_c,
        *(s.contiguous() for s in state), *params,
    )
    return out, tuple(final)


# --------------------------------------------------------------------------------------------------
# The readable reference: the same recurrence and masks as a plain autograd loop.
# --------------------------------------------------------------------------------------------------


def reference_recurrence(
    step,
    gi: Tensor,
    state: tuple[Tensor, ...],
    *,
    reverse: bool = False,
    hidden_mask: Tensor | None = None,
    keep: Tensor | tuple[Tensor | None, ...] | None = None,
    valid: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """What :func:`fused_recurrence` computes, written plainly: ``step(gi_t, h_in, state) -> state``.

    Used as the ``backend="loop"`` path of the layers and as the oracle in the tests.
    """
    keeps = _as_keep(keep, len(state))[: len(state)]
    inputs = gi.unbind(0)  # T x (B, G); unbind, not gi[t]: indexing per step is O(T^2) in backward
    outs: list[Tensor] = [None] * len(inputs)  # type: ignore[list-item]
    for t in range(len(inputs) - 1, -1, -1) if reverse else range(len(inputs)):
        h_in = state[0] * hidden_mask if hidden_mask is not None else state[0]
        new = step(inputs[t], h_in, state)
        state = tuple(
            n if k is None else s + k[t] * (n - s) for n, s, k in zip(new, state, keeps)
        )
        outs[t] = state[0] * valid[t] if valid is not None else state[0]
    return torch.stack(outs), state


# --------------------------------------------------------------------------------------------------
# Layers: rnnkit's RNN / LSTM / GRU running on the fused recurrence, with recurrent dropout.
# --------------------------------------------------------------------------------------------------


def _gru_step(gi: Tensor, h_in: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """GRU step where the recurrent product sees ``h_in`` (maybe dropped) and the carry sees ``h``."""
    gh = F.linear(h_in, w_hh, b_hh)  # (B, 3H)
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)


def valid_mask(lengths: Tensor | None, steps: int, like: Tensor) -> Tensor | None:
    """(T, B, 1) of ones where step t lies inside sequence b, zeros past its end."""
    if lengths is None:
        return None
    t = torch.arange(steps, device=like.device)
    return (t[:, None] < lengths.to(like.device)[None, :]).unsqueeze(-1).to(like.dtype)


class FusedMixin:
    """Runs every (layer, direction) of an ``rnnkit.nn.RNNBase`` layer through the fused Function.

    Put it first in the bases (``class FusedLSTM(FusedMixin, LSTM)``): it overrides the
    ``_run_direction`` hook, so batch_first, bidirectional, stacked layers, packed sequences,
    ``lengths`` and ``hx`` all come from the base class. ``backend="loop"`` runs the same recurrence
    and masks through the readable :func:`reference_recurrence` instead (and so does
    ``proj_size > 0``, which the fused kernels do not implement).

    Extra keyword-only constructor arguments (``rnnkit.nn.dropout``), all 0 by default:
    ``recurrent_dropout`` (variational, on ``h`` entering ``W_hh``), ``zoneout`` (a float, or
    ``(p_h, p_c)`` for LSTM), ``weight_dropout`` (DropConnect on ``W_hh``).
    """

    _has_native = False
    _native_reason = "it runs rnnkit's fused recurrence, which torch has no kernel for"

    def __init__(self, *args, recurrent_dropout=0.0, zoneout=0.0, weight_dropout=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.recurrent_dropout = check_probability("recurrent_dropout", recurrent_dropout)
        self.weight_dropout = check_probability("weight_dropout", weight_dropout)
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
        return s

    @property
    def fused_cell(self) -> str:
        """The ``CELLS`` entry this layer runs."""
        return {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}[
            self.mode
        ]

    def _gi_and_params(self, x: Tensor, w: dict, layer: int, reverse: bool):
        """(gi (T, B, G), the cell's extra parameters in ``CELLS`` order)."""
        if self.mode == "GRU":
            return F.linear(x, w["w_ih"], w["b_ih"]), (w["b_hh"],)
        bias = None if w["b_ih"] is None else w["b_ih"] + w["b_hh"]
        return F.linear(x, w["w_ih"], bias), ()  # (T, B, G), both biases folded in

    def _reference_step(self, w_hh: Tensor, w: dict, params: tuple):
        """step(gi_t, h_in, state) -> state, for :func:`reference_recurrence`."""
        if self.mode == "LSTM":
            return lambda g, h_in, s: lstm_step(g, h_in, s[1], w_hh, w["w_hr"])
        if self.mode == "GRU":
            return lambda g, h_in, s: (_gru_step(g, h_in, s[0], w_hh, params[0]),)
        nl = "tanh" if self.mode == "RNN_TANH" else "relu"
        return lambda g, h_in, s: (rnn_step(g, h_in, w_hh, nl),)

    def _run_direction(self, x, state, layer, reverse, lengths):
        """x (T, B, I), state tuple of (B, ·) -> (out (T, B, H_out), state)."""
        w = self._direction_weights(layer, reverse)
        w_hh = drop_connect(w["w_hh"], self.weight_dropout, self.training)
        gi, params = self._gi_and_params(x, w, layer, reverse)
        T, B = gi.shape[:2]
        valid = valid_mask(lengths, T, gi)
        keep = []
        for s, p in zip(state, self.zoneout):
            k = zoneout_keep(T, B, s.shape[-1], p, self.training, gi) if p else None
            keep.append(k if valid is None else (valid if k is None else k * valid))
        hidden_mask = None
        if self.recurrent_dropout and self.training:
            hidden_mask = variational_mask(B, state[0].shape[-1], self.recurrent_dropout, gi)
        kw = {"reverse": reverse, "hidden_mask": hidden_mask, "keep": tuple(keep), "valid": valid}
        if self.backend == "loop" or w["w_hr"] is not None:
            step = self._reference_step(w_hh, w, params)
            return reference_recurrence(step, gi, state, **kw)
        dtype = gi.dtype  # under autocast gi may be bf16 while the weights are float32
        params = tuple(None if p is None else p.to(dtype) for p in params)
        state = tuple(s.to(dtype) for s in state)
        return fused_recurrence(self.fused_cell, gi, state, w_hh.to(dtype), params, **kw)


class FusedRNN(FusedMixin, RNN):
    """``rnnkit.RNN`` on the fused recurrence, with recurrent dropout (see :class:`FusedMixin`)."""


class FusedLSTM(FusedMixin, LSTM):
    """``rnnkit.LSTM`` on the fused recurrence, with recurrent dropout (see :class:`FusedMixin`)."""


class FusedGRU(FusedMixin, GRU):
    """``rnnkit.GRU`` on the fused recurrence, with recurrent dropout (see :class:`FusedMixin`)."""
