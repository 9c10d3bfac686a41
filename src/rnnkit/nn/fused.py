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
  ``(T*B, G)`` and ``h_in`` ``(T*B, H)``; the GRU's ``b_hh`` is one reduction over all steps; the
  layer-norm gains and shifts come out of ATen's layer-norm backward kernel step by step (it
  computes them in the same pass as the input gradient) and are summed once at the end.

Large buffers (per-step activations, states, the backward's bulk factors) come from
``FUSED_WORKSPACE``, which hands a finished call's buffers to the next call of the same shape on
CPU, so that a call does not page-fault its way through fresh memory (see :class:`_Workspace`).

The per-step products with ``W_hh`` go through :class:`_Product`: on CPU in float32 with MKL the
forward's ``h_in W_hh^T`` uses ``W_hh`` packed once per call into MKL's internal GEMM layout
(``torch.ops.mkl._mkl_linear``, the packed-weight path PyTorch's own compiler uses), measured
1.2-1.5x faster per product than ``torch.mm`` at B=32..64 on this machine, and the backward's
``da W_hh`` a second packing of ``W_hh^T``; elsewhere it is ``torch.mm``.

With :mod:`rnnkit.nn.cpu_kernels` enabled, the LSTM and LN-LSTM kernels run the time loop itself
in C++ (``forward_all`` / ``backward_all``), doing what the per-step driver below does, in order.

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

import functools
import threading

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.nn.cells import gru_gates, lstm_step, rnn_step
from rnnkit.nn.dropout import check_probability, drop_connect, variational_mask, zoneout_keep
from rnnkit.nn.layers import GRU, LSTM, RNN

EPS = 1e-5  # layer-norm epsilon, as torch.nn.LayerNorm


def _ln(a: Tensor, eps: float, weight: Tensor | None = None, bias: Tensor | None = None):
    """``weight ⊙ (a - mean) rstd + bias`` over the last axis; returns (that, mean, rstd)."""
    return torch.native_layer_norm(a, a.shape[-1:], weight, bias, eps)


def _ln_backward(dy: Tensor, a: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor | None,
                 grad_weight: bool = False, bias: Tensor | None = None):
    """Gradients through ``y = weight ⊙ â + bias``, ``â = (a - mean) rstd`` over the last axis:

        d = dy ⊙ weight;   da = rstd (d - mean(d) - â mean(d ⊙ â));
        d weight = Σ_rows dy ⊙ â;   d bias = Σ_rows dy

    computed by ATen's layer-norm backward kernel (one pass instead of six small ops).
    Returns (da, d weight if ``grad_weight`` else None, d bias if ``bias`` is given else None).
    """
    return torch.ops.aten.native_layer_norm_backward(
        dy, a, a.shape[-1:], mean, rstd, weight, bias, [True, grad_weight, bias is not None]
    )


def _sigmoid_slope(s: Tensor, out: Tensor) -> Tensor:
    """σ'(x) = s - s^2 from s = σ(x), into ``out``.

    One ``addcmul`` pass: these are (T, B, H) arrays far larger than the cache, so the time is the
    number of passes over memory (mul, neg, add was three).
    """
    return torch.addcmul(s, s, s, value=-1, out=out)


def _tanh_slope(y: Tensor, out: Tensor) -> Tensor:
    """tanh'(x) = 1 - y^2 from y = tanh(x), into ``out``, in one pass (a 0-dim 1 broadcasts)."""
    return torch.addcmul(y.new_ones(()), y, y, value=-1, out=out)


class _Workspace:
    """Buffers of finished calls, handed to the next call of the same shape (CPU only).

    A (T, B, 4H) buffer is megabytes: the C allocator gets it from the OS and gives it back at
    every call, so each call pays a page fault per 4 KB on first touch (measured: about a third of
    the LN-LSTM forward's CPU time at T=128, B=32, H=256). Keeping the buffers of a finished call
    for the next removes that. A buffer comes back only when the kernel that took it is garbage
    (after its backward, or at once under no_grad), so nothing in use is ever handed out twice.
    At most ``limit_bytes`` are kept (``FUSED_WORKSPACE.limit_bytes = 0`` turns it off), and
    ``clear()`` frees them. GPU tensors are not kept: PyTorch's CUDA allocator already caches.
    One lock guards the lists and the byte count, so layers may run in several threads at once.
    """

    def __init__(self, limit_bytes: int = 512 << 20) -> None:
        self.limit_bytes = limit_bytes
        self.free: dict[tuple, list[Tensor]] = {}
        self.held = 0
        self.lock = threading.Lock()

    def take(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        key = (tuple(shape), like.dtype, like.device)
        if self.limit_bytes > 0:  # turned off: what it still holds is not handed out either
            with self.lock:
                kept = self.free.get(key)
                if kept:
                    t = kept.pop()
                    self.held -= t.nbytes
                    return t
        return like.new_empty(shape)

    def give(self, tensors: list[Tensor]) -> None:
        with self.lock:
            for t in tensors:
                if t.device.type != "cpu" or self.held + t.nbytes > self.limit_bytes:
                    continue
                self.free.setdefault((tuple(t.shape), t.dtype, t.device), []).append(t)
                self.held += t.nbytes

    def clear(self) -> None:
        with self.lock:
            self.free, self.held = {}, 0


FUSED_WORKSPACE = _Workspace()


class _Owner:
    """Takes buffers from :data:`FUSED_WORKSPACE` and gives them back when garbage-collected."""

    owned: list[Tensor]

    def take(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        t = FUSED_WORKSPACE.take(shape, like)
        if not hasattr(self, "owned"):
            self.owned = []
        self.owned.append(t)
        return t

    def __del__(self) -> None:
        owned = getattr(self, "owned", None)
        if owned and FUSED_WORKSPACE is not None:  # None: interpreter shutdown
            FUSED_WORKSPACE.give(owned)


def _mkl_packed_available() -> bool:
    try:
        return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")
    except (AttributeError, RuntimeError):
        return False


#: use MKL's packed GEMM for the per-step products where it applies (set False to compare)
PACKED_GEMM = _mkl_packed_available()
#: with PACKED_GEMM, pack W_hh^T for the backward's per-step products as well
PACKED_BACK = True


class _Product:
    """The per-step products with ``W_hh`` (G, H) for one call, at batch size B.

    ``mm(h_in, out)``: ``h_in W_hh^T`` (B, G); ``addmm(bias, h_in, out)``: ``bias + h_in W_hh^T``
    into ``out``; ``back(da, base)``: ``da W_hh`` (B, H), plus ``base`` if given.

    The packed path returns a new tensor from ``mm`` (the op has no ``out=``), so callers keep
    what ``mm`` returns rather than ``out``. Packing costs about one step's product per call.
    The backward's products are packed too (a second packing, of W_hh^T), unless
    ``PACKED_BACK`` is off: measured ~110 against ~130 us a step at B=32, H=256.
    """

    def __init__(self, w_hh: Tensor, batch: int) -> None:
        self.w_hh, self.batch, self._back = w_hh, batch, None
        self.packed = (PACKED_GEMM and w_hh.device.type == "cpu" and w_hh.dtype == torch.float32
                       and batch > 1)
        if self.packed:
            self.fwd_w = torch.ops.mkl._mkl_reorder_linear_weight(w_hh, batch)  # (B, H) -> (B, G)
        else:
            self.w_t = w_hh.t().contiguous()  # (H, G): one copy per call; faster than a view

    def mm(self, h_in: Tensor, out: Tensor) -> Tensor:
        if self.packed:
            return torch.ops.mkl._mkl_linear(h_in, self.fwd_w, self.w_hh, None, self.batch)
        return torch.mm(h_in, self.w_t, out=out)

    def addmm(self, bias: Tensor, h_in: Tensor, out: Tensor) -> Tensor:
        if self.packed:
            return torch.add(bias, self.mm(h_in, out), out=out)
        return torch.addmm(bias, h_in, self.w_t, out=out)

    def back(self, da: Tensor, base: Tensor | None) -> Tensor:
        if self.packed and PACKED_BACK:
            out = torch.ops.mkl._mkl_linear(da, *self.back_weights(), None, self.batch)
            return out if base is None else out.add_(base)
        return torch.mm(da, self.w_hh) if base is None else torch.addmm(base, da, self.w_hh)

    def back_weights(self) -> tuple[Tensor, Tensor]:
        """(W_hh packed as the weight of the linear map ``da -> da W_hh``, its origin W_hh^T);
        made on first use, so a forward without backward never pays for the second packing."""
        if self._back is None:
            w_t = self.w_hh.t().contiguous()  # (H, G)
            self._back = (torch.ops.mkl._mkl_reorder_linear_weight(w_t, self.batch), w_t)
        return self._back


def _steps(buf: Tensor, T: int) -> list[Tensor] | tuple[Tensor, ...]:
    """Per-step views of a (T or 1, ...) buffer: with one row, step t always gets row 0."""
    return buf.unbind(0) if buf.shape[0] == T else [buf[0]] * T


# --------------------------------------------------------------------------------------------------
# Kernels: one cell's step and its backward. The driver (_Recurrence) owns time, masks and W_hh.
#
#   forward_step(t, h_in, prod, prev, new) reads gi[t], writes the new states into `new` (a list
#                                          of (B, H) views), saves what backward needs at t
#   prepare_backward(prev_all, new_all)    bulk precomputation over all T before the loop (once:
#                                          a second backward through the graph reuses it)
#   backward_step(t, d_new) -> (da_t, direct gradients on the previous states)
#                                          da_t is the gradient of a_t = h_in W_hh^T
#   finish() -> (dgi (T, B, G), da (T, B, G), gradients of the cell's own parameters)
#
# Per-step views come from one ``unbind`` of each (T, ...) buffer up front (about 2 us a view,
# against 3 us for indexing from Python at every step), every per-step write goes to a contiguous
# block (a strided ``out=`` costs a hidden copy), and small workspaces are reused across steps.
# --------------------------------------------------------------------------------------------------


class _ElmanKernel(_Owner):
    def __init__(self, gi: Tensor, params: tuple, relu: bool, save: bool = True) -> None:
        self.gi, self.relu = gi.unbind(0), relu

    def forward_step(self, t, h_in, prod, prev, new):
        h_new = prod.addmm(self.gi[t], h_in, new[0])  # (B, H)
        h_new.relu_() if self.relu else h_new.tanh_()

    def prepare_backward(self, prev_all, new_all):
        (h,) = new_all  # (T, B, H)
        deriv = (h > 0).to(h.dtype) if self.relu else _tanh_slope(h, torch.empty_like(h))
        self.deriv = deriv.unbind(0)  # σ'(pre) from σ's output
        self.da = torch.empty_like(h)
        self.da_t = self.da.unbind(0)

    def backward_step(self, t, d_new):
        return torch.mul(d_new[0], self.deriv[t], out=self.da_t[t]), (None,)

    def finish(self):
        return self.da, self.da, ()


class _LSTMKernel(_Owner):
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
        self.act_t, self.g_t, self.y_t = (_steps(b, T) for b in (self.act, self.g, self.y))
        a4 = self.act.view(R, B, 4, H)
        self.i_t, self.f_t, self.gpre_t, self.o_t = (_steps(a4[:, :, k], T) for k in range(4))

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
            _sigmoid_slope(i, P[:, :, 0]).mul_(g)  # i(1-i) g
            _sigmoid_slope(f, P[:, :, 1]).mul_(prev_all[1])  # f(1-f) c_{t-1}
            _tanh_slope(g, P[:, :, 2]).mul_(i)  # (1-g^2) i
            _sigmoid_slope(o, P[:, :, 3]).mul_(y)  # o(1-o) y
            self.K = _tanh_slope(y, self.take(y.shape, y)).mul_(o)  # dc += dh K: via h' = o y
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


class _LNLSTMKernel(_LSTMKernel):
    """LSTM with ``gates = gi + γ_hh LN(a)`` and ``h' = σ(o) tanh(γ_c LN(c') + β_c)``.

    Forward keeps ``a = W_hh h_in`` and the LN statistics of each step (two (B, 1) tensors); the
    LN backward kernel gives the gain and shift gradients of each step along with ``da``.
    """

    def __init__(self, gi: Tensor, params: tuple, save: bool = True, eps: float = EPS) -> None:
        super().__init__(gi, params, save)
        self.g_hh, self.g_c, self.b_c = params
        self.eps = eps
        T = gi.shape[0]
        self.a = self.take((T if save else 1, *gi.shape[1:]), gi)  # (T, B, 4H) W_hh h_in, pre-LN
        self.a_t = list(_steps(self.a, T))
        self.stats_a, self.stats_c = [None] * T, [None] * T  # (mean, rstd) per step, (B, 1) each

    def gates(self, t, h_in, prod):
        a = self.a_t[t] = prod.mm(h_in, self.a_t[t])  # keep what mm returns (see _Product)
        ln_a, mean, rstd = _ln(a, self.eps, self.g_hh)  # γ_hh LN(a)
        self.stats_a[t] = (mean, rstd)
        return torch.add(self.gi[t], ln_a, out=self.act_t[t])

    def cell_out(self, t, c_new):
        ln_c, mean, rstd = _ln(c_new, self.eps, self.g_c, self.b_c)  # γ_c LN(c') + β_c
        self.stats_c[t] = (mean, rstd)
        return torch.tanh(ln_c, out=self.y_t[t])

    def prepare_backward(self, prev_all, new_all):
        super().prepare_backward(prev_all, new_all)  # with y = tanh(LN_c(c)): K = o(1-y^2), P_o
        self.c_t = new_all[1].unbind(0)
        T = len(self.a_t)
        self.da, self.d_g_hh, self.d_g_c, self.d_b_c = ([None] * T for _ in range(4))

    def backward_step(self, t, d_new):
        dh, dc = d_new
        d_pre = dh * self.K_t[t]  # (B, H) gradient of γ_c ĉ + β_c
        mean, rstd = self.stats_c[t]
        dc_ln, self.d_g_c[t], self.d_b_c[t] = _ln_backward(
            d_pre, self.c_t[t], mean, rstd, self.g_c, True, self.b_c)
        dc = dc_ln.add_(dc)
        dg = self.gate_grads(t, dh, dc).view(dh.shape[0], -1)  # (B, 4H)
        mean, rstd = self.stats_a[t]
        da, self.d_g_hh[t], _ = _ln_backward(dg, self.a_t[t], mean, rstd, self.g_hh, True)
        self.da[t] = da
        return da, (None, dc * self.f[t])

    def finish(self):
        grads = (torch.stack(self.d_g_hh).sum(0), torch.stack(self.d_g_c).sum(0),
                 torch.stack(self.d_b_c).sum(0))  # γ_hh, γ_c, β_c
        da = torch.stack(self.da, out=self.take((len(self.da), *self.da[0].shape), self.dg))
        return self.dg, da, grads  # da only feeds d W_hh, so its buffer can go back to the pool


class _CompiledLSTMKernel(_Owner):
    """The (LN-)LSTM step through the compiled loops of :mod:`rnnkit.nn.cpu_kernels` (opt-in).

    The same mathematics and driver interface as :class:`_LNLSTMKernel` (``layer_norm=True``) or
    :class:`_LSTMKernel` (``layer_norm=False``); what differs is what is kept. With layer norm,
    forward keeps ``â = (a - mean) rstd`` in place of ``a``, ``ĉ`` and the two ``rstd`` per step
    (a backward needs nothing else of the layer norms), and backward computes the local
    derivatives row by row instead of as bulk ``P``/``K`` arrays. Each backward step also adds
    its share of the gains' and shift's gradients (``dγ_hh = Σ dgates ⊙ â``, ``dγ_c = Σ dz ⊙ ĉ``,
    ``dβ_c = Σ dz``, with ``dz`` the gradient of ``γ_c ĉ + β_c``) while its rows are in cache.
    The plain LSTM keeps the gate activations, ``tanh(g)`` and ``y = tanh(c')``, and its ``da``
    is the gates' gradient itself.
    """

    def __init__(self, gi: Tensor, params: tuple, save: bool = True, eps: float = EPS,
                 input_ln: bool = False, layer_norm: bool = True) -> None:
        from rnnkit.nn import cpu_kernels

        self.ext, self.eps, self.ln = cpu_kernels.load(), eps, layer_norm
        T, B, G = gi.shape
        H = G // 4
        R = T if save else 1  # as _LSTMKernel: without backward, every step reuses one row
        # LN: γ_hh, γ_c, β_c, and with ``input_ln`` γ_ih and the shift: then ``gi`` is W_ih x
        # (pre-LN) and the loop applies γ_ih LN(·) + shift row by row (whole loop only). Plain: ()
        self.params = tuple(p.contiguous() for p in params)
        self.input_ln = input_ln
        self.stat_x = self.take((2, R, B), gi) if input_ln else None  # mean, rstd of W_ih x
        self.gi = gi
        self.none = gi.new_empty(0)  # for the buffers the plain LSTM does not have
        self.act = self.take((R, B, G), gi)  # σ(i), σ(f), (unused), σ(o)
        self.g, self.y = (self.take((R, B, H), gi) for _ in range(2))  # tanh(g), y
        if layer_norm:
            self.ahat = self.take((R, B, G), gi)  # â
            self.chat = self.take((R, B, H), gi)  # ĉ
            self.rstd = self.take((2, R, B), gi)  # rstd of a, rstd of c'
        else:
            self.ahat = self.take((1, B, G), gi)  # scratch: the product a of one step
            self.chat = self.none
            self.rstd = (self.none, self.none)

    def _ln3(self, tensors: tuple) -> tuple:
        """The first three of ``tensors`` (γ_hh, γ_c, β_c or their gradients), or three empty
        tensors for the plain LSTM, which has none."""
        return tensors[:3] if self.ln else (self.none,) * 3

    # Per-step views, made on first use: the whole loop (forward_all / backward_all) needs none.

    @functools.cached_property
    def _fwd_views(self):
        T = self.gi.shape[0]
        ln_bufs = (self.chat, *self.rstd) if self.ln else ()
        views = [self.gi.unbind(0), *(_steps(b, T) for b in (
            self.act, self.ahat, self.g, self.y, *ln_bufs))]
        return views if self.ln else views + [[self.none] * T] * 3

    @functools.cached_property
    def _bwd_views(self):
        return self.c_prev.unbind(0), self.dg.unbind(0), self.da.unbind(0)

    def forward_step(self, t, h_in, prod, prev, new):
        assert not self.input_ln, "the input layer norm runs in the whole loop only"
        gi, act, ahat, g, y, chat, rstd_a, rstd_c = self._fwd_views
        a = prod.mm(h_in, ahat[t])  # a may be ahat[t] itself: the kernel reads a row before it
        g_hh, g_c, b_c = self._ln3(self.params)  # writes â over it
        self.ext.lstm_step_forward(
            self.ln, self.eps, a, gi[t], g_hh, prev[1], g_c, b_c,
            ahat[t] if self.ln else self.none, rstd_a[t], act[t], g[t], new[1], chat[t],
            rstd_c[t], y[t], new[0])

    def prepare_backward(self, prev_all, new_all):
        B, H = self.y.shape[1:]
        self.c_prev = prev_all[1]  # (T, B, H) the cell state each step read
        if self.input_ln:  # the gates' gradient is scratch; what backward returns is dx
            self.dg = self.take((1, B, 4 * H), self.act)  # one step of d gates
            self.dx = torch.empty_like(self.act)  # (T, B, 4H) gradient of W_ih x
            self.xhat_x = self.take((B, 4 * H), self.act)  # scratch: LN(W_ih x) of one step
        else:
            self.dg = torch.empty_like(self.act)  # (T, B, 4H) gradient of the gates (= of gi)
        # (T, B, 4H) gradient of a: for the plain LSTM the gates' gradient itself
        self.da = self.take(self.act.shape, self.act) if self.ln else self.dg
        # scratch: gradient of γ_c ĉ + β_c at one step
        self.dz = self.act.new_empty(B, H) if self.ln else self.none
        self.__dict__.pop("_bwd_views", None)  # a second backward has new dg, da
        # dγ_hh = Σ dgates ⊙ â, dγ_c = Σ dz ⊙ ĉ, dβ_c = Σ dz, added to by every step
        self.d_params = tuple(torch.zeros_like(p) for p in self.params)

    def backward_step(self, t, d_new):
        _, act, ahat, g, y, chat, rstd_a, rstd_c = self._fwd_views
        c_prev, dg, da = self._bwd_views
        dh, dc = (d.contiguous() for d in d_new)
        g_hh, g_c, _ = self._ln3(self.params)
        dc_prev = torch.empty_like(dc)
        self.ext.lstm_step_backward(
            self.ln, dh, dc, act[t], g[t], y[t], c_prev[t], chat[t], rstd_c[t], g_c,
            ahat[t] if self.ln else self.none, rstd_a[t], g_hh, dg[t], da[t], self.dz, dc_prev,
            *self._ln3(self.d_params))
        return da[t], (None, dc_prev)

    # The whole time loop in C++: the same products, kernels and blends (zoneout, lengths) as the
    # driver's per-step path, op for op. keeps: (keep_h, keep_c), each (T, B, 1 or H) or None;
    # NEW: the (T, B, H) buffers of the unblended new states, or None when nothing is blended.

    def forward_all(self, reverse, S, prod, hidden_mask, keeps, NEW):
        g_hh, g_c, b_c = self._ln3(self.params)
        x_ln = (*self.params[3:], self.stat_x) if self.input_ln else (None, None, None)
        w_mm = prod.fwd_w if prod.packed else prod.w_t
        self.ext.lstm_forward_loop(
            self.ln, self.eps, reverse, self.gi, prod.w_hh, w_mm, prod.packed, hidden_mask,
            *keeps, *(NEW if NEW is not None else (None, None)), *S, g_hh, g_c, b_c, self.ahat,
            self.rstd[0], self.act, self.g, self.chat, self.rstd[1], self.y, *x_ln)

    def backward_all(self, reverse, dy, d_final, prod, hidden_mask, keeps):
        g_hh, g_c, _ = self._ln3(self.params)
        back = prod.back_weights() if prod.packed and PACKED_BACK else (None, None)
        x_ln = (None,) * 7
        if self.input_ln:
            x_ln = (self.gi, self.params[3], self.stat_x, self.xhat_x, self.dx, *self.d_params[3:])
        return self.ext.lstm_backward_loop(
            self.ln, reverse, dy, *d_final, prod.w_hh, *back, hidden_mask, *keeps, self.act,
            self.g, self.y, self.c_prev, self.chat, self.rstd[1], g_c,
            self.ahat if self.ln else self.none, self.rstd[0], g_hh, self.dg, self.da, self.dz,
            *self._ln3(self.d_params), *x_ln)

    def finish(self):
        return self.dx if self.input_ln else self.dg, self.da, self.d_params


#: use the compiled kernels of rnnkit.nn.cpu_kernels where they apply (set by cpu_kernels.enable())
CPU_KERNELS = False
#: let a kernel that can (the compiled LSTM / LN-LSTM) run the whole time loop itself
#: (set False to compare with the per-step Python driver: the results are the same bit for bit)
WHOLE_LOOP = True


def compiled_applies(t: Tensor) -> bool:
    """Whether the compiled kernels are on and take tensors like ``t`` (CPU, float32/64)."""
    return CPU_KERNELS and t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)


def input_ln_in_loop(x: Tensor) -> bool:
    """Whether ``ln_lstm_x`` runs compiled on ``x = W_ih x_t`` (the input LN inside the whole
    loop): where the layers hand it ``W_ih x`` instead of doing that layer norm themselves."""
    return compiled_applies(x) and WHOLE_LOOP


def _ln_lstm_kernel(gi: Tensor, params: tuple, save: bool = True):
    """The compiled LN-LSTM kernel when enabled and applicable, else the eager."""
    return _CompiledLSTMKernel(gi, params, save) if compiled_applies(gi) else _LNLSTMKernel(
        gi, params, save)


def _lstm_kernel(gi: Tensor, params: tuple, save: bool = True):
    """The compiled plain-LSTM kernel when enabled and applicable, else the eager."""
    if compiled_applies(gi):
        return _CompiledLSTMKernel(gi, params, save, layer_norm=False)
    return _LSTMKernel(gi, params, save)


class _InputLNLSTMKernel(_LNLSTMKernel):
    """``ln_lstm_x`` on the eager kernel: ``gi = γ_ih LN(x) + shift`` for all steps before the
    loop (one ATen layer norm), its backward after, in :meth:`finish`."""

    def __init__(self, x: Tensor, params: tuple, save: bool = True, eps: float = EPS) -> None:
        g_hh, g_c, b_c, g_ih, shift = params
        gi, self.mean_x, self.rstd_x = _ln(x, eps, g_ih, shift)  # (T, B, 4H), (T, B, 1) x 2
        super().__init__(gi, (g_hh, g_c, b_c), save, eps)
        self.x, self.g_ih, self.shift = x, g_ih, shift

    def finish(self):
        dgi, da, p_grads = super().finish()
        dx, d_g_ih, d_shift = _ln_backward(dgi, self.x, self.mean_x, self.rstd_x, self.g_ih,
                                           True, self.shift)
        return dx, da, (*p_grads, d_g_ih, d_shift)


def _ln_lstm_x_kernel(x: Tensor, params: tuple, save: bool = True):
    """LN-LSTM given ``x = W_ih x_t`` before its layer norm: compiled (the input LN inside the
    whole loop) when enabled and applicable, else the eager kernel after a bulk layer norm."""
    if input_ln_in_loop(x):
        return _CompiledLSTMKernel(x, params, save, input_ln=True)
    return _InputLNLSTMKernel(x, params, save)


class _GRUKernel(_Owner):
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
        if not hasattr(self, "Q"):
            (h_prev,) = prev_all
            r, z, n = self.rz[..., :H], self.rz[..., H:], self.n
            Q = self.n.new_empty(T, B, 3, H)  # d gi = [da_n, dh, dh] ⊙ Q, da_n = dh Q_n
            _sigmoid_slope(r, Q[:, :, 0]).mul_(self.gh[..., 2 * H :])  # r(1-r) gh_n
            _sigmoid_slope(z, Q[:, :, 1]).mul_(h_prev - n)  # z(1-z) (h - n)
            _tanh_slope(n, Q[:, :, 2]).mul_(1 - z)  # (1-n^2)(1-z)
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


class _LNGRUKernel(_GRUKernel):
    """GRU with ``gh = γ_hh LN(a) + b_hh``."""

    def __init__(self, gi: Tensor, params: tuple, save: bool = True, eps: float = EPS) -> None:
        self.g_hh, b_hh = params
        super().__init__(gi, (b_hh,))
        self.eps = eps
        self.a = torch.empty_like(gi)  # (T, B, 3H) recurrent pre-activation before LN
        self.a_t = list(self.a.unbind(0))
        self.stats = [None] * gi.shape[0]

    def recurrent(self, t, h_in, prod):
        a = self.a_t[t] = prod.mm(h_in, self.a_t[t])  # keep what mm returns (see _Product)
        gh, mean, rstd = _ln(a, self.eps, self.g_hh, self.b_hh)  # γ_hh LN(a) + b_hh
        self.stats[t] = (mean, rstd)
        return self.gh_t[t].copy_(gh)

    def prepare_backward(self, prev_all, new_all):
        super().prepare_backward(prev_all, new_all)
        T = len(self.a_t)
        self.da, self.d_g_hh, self.d_b_hh = ([None] * T for _ in range(3))

    def backward_step(self, t, d_new):
        dgh, dprev = super().backward_step(t, d_new)  # d gh (B, 3H)
        mean, rstd = self.stats[t]
        da, self.d_g_hh[t], self.d_b_hh[t] = _ln_backward(
            dgh, self.a_t[t], mean, rstd, self.g_hh, True, self.b_hh)
        self.da[t] = da
        return da, dprev

    def finish(self):
        T, B = self.dgi.shape[:2]
        d_b = None if self.b_hh is None else torch.stack(self.d_b_hh).sum(0)
        grads = (torch.stack(self.d_g_hh).sum(0), d_b)  # γ_hh, b_hh
        return self.dgi.view(T, B, -1), torch.stack(self.da), grads


# --------------------------------------------------------------------------------------------------
# The driver: time, direction, masks and W_hh; the same for every cell.
# --------------------------------------------------------------------------------------------------

#: cell name -> (kernel factory, number of state tensors, gates per hidden unit, parameter names)
CELLS = {
    "rnn_tanh": (lambda gi, p, save: _ElmanKernel(gi, p, relu=False), 1, 1, ()),
    "rnn_relu": (lambda gi, p, save: _ElmanKernel(gi, p, relu=True), 1, 1, ()),
    "lstm": (_lstm_kernel, 2, 4, ()),
    "gru": (_GRUKernel, 1, 3, ("b_hh",)),
    "ln_lstm": (_ln_lstm_kernel, 2, 4, ("g_hh", "g_c", "b_c")),
    # the same with the input side's layer norm inside: gi is W_ih x, before γ_ih LN(·) + shift
    "ln_lstm_x": (_ln_lstm_x_kernel, 2, 4, ("g_hh", "g_c", "b_c", "g_ih", "shift")),
    "ln_gru": (_LNGRUKernel, 1, 3, ("g_hh", "b_hh")),
}


class _Recurrence(torch.autograd.Function):
    """forward(cell, reverse, gi, w_hh, hidden_mask, valid, keep_h, keep_c, *states, *params)."""

    @staticmethod
    def forward(ctx, cell, reverse, gi, w_hh, hidden_mask, valid, keep_h, keep_c, *rest):
        # the kernels write into preallocated buffers (out=), which autocast does not allow; the
        # caller has already cast everything to gi's dtype, so autocast has nothing left to do
        with torch.autocast(gi.device.type, enabled=False):
            return _Recurrence._forward(ctx, cell, reverse, gi, w_hh, hidden_mask, valid,
                                        keep_h, keep_c, *rest)

    @staticmethod
    def _forward(ctx, cell, reverse, gi, w_hh, hidden_mask, valid, keep_h, keep_c, *rest):
        make, n_state, _, _ = CELLS[cell]
        states, params = rest[:n_state], rest[n_state:]
        # no input needs a gradient (torch.no_grad, inference): the LSTM kernels then keep nothing
        # for backward (see _LSTMKernel); the others write the same buffers either way
        kernel = make(gi, params, any(ctx.needs_input_grad))
        T, B, _ = gi.shape
        H = w_hh.shape[1]
        blend = any(k is not None for k in (keep_h, keep_c)[:n_state])
        # S[k][j]: state k between steps. Forward: step t reads j = t, writes j = t + 1; reverse:
        # reads j = t + 1, writes j = t. So S[:-1] / S[1:] line up with t either way.
        S = [kernel.take((T + 1, B, H), gi) for _ in range(n_state)]
        for s, s0 in zip(S, states):
            s[T if reverse else 0] = s0
        NEW = [kernel.take((T, B, H), gi) for _ in range(n_state)] if blend else None
        prod = _Product(w_hh, B)
        whole = WHOLE_LOOP and hasattr(kernel, "forward_all")
        if whole:  # the kernel runs the time loop itself (compiled)
            kernel.forward_all(reverse, S, prod, hidden_mask, (keep_h, keep_c), NEW)
        else:
            _Recurrence._step_loop(kernel, prod, S, NEW, reverse, hidden_mask, (keep_h, keep_c))

        ctx.kernel, ctx.S, ctx.NEW, ctx.cell, ctx.reverse, ctx.prod = kernel, S, NEW, cell, reverse, prod
        ctx.whole = whole
        ctx.save_for_backward(w_hh, hidden_mask, valid, keep_h, keep_c)
        out = S[0][:-1] if reverse else S[0][1:]  # (T, B, H)
        out = out * valid if valid is not None else out.clone()
        j_last = 0 if reverse else T
        return (out, *(s[j_last].clone() for s in S))

    @staticmethod
    def _step_loop(kernel, prod, S, NEW, reverse, hidden_mask, keep):
        """The forward's time loop in Python, one ``kernel.forward_step`` per step."""
        T = S[0].shape[0] - 1
        keeps = [k.unbind(0) if k is not None else None for k in keep[: len(S)]]
        S_t = [s.unbind(0) for s in S]
        NEW_t = [n.unbind(0) for n in NEW] if NEW is not None else None
        r = 1 if reverse else 0
        step = kernel.forward_step
        for t in range(T - 1, -1, -1) if reverse else range(T):
            j_prev, j_new = t + r, t + 1 - r
            prev = [s[j_prev] for s in S_t]
            h_in = prev[0] if hidden_mask is None else prev[0] * hidden_mask
            if NEW_t is None:
                step(t, h_in, prod, prev, [s[j_new] for s in S_t])
                continue
            new = [n[t] for n in NEW_t]
            step(t, h_in, prod, prev, new)
            for k, keep_k in enumerate(keeps):  # s_t = s_{t-1} + k_t (s'_t - s_{t-1})
                if keep_k is None:
                    S_t[k][j_new].copy_(new[k])
                else:
                    torch.lerp(prev[k], new[k], keep_k[t], out=S_t[k][j_new])

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, *d_final):
        with torch.autocast(dy.device.type, enabled=False):
            return _Recurrence._backward(ctx, dy, *d_final)

    @staticmethod
    def _backward(ctx, dy, *d_final):
        w_hh, hidden_mask, valid, keep_h, keep_c = ctx.saved_tensors
        kernel, S, NEW, reverse = ctx.kernel, ctx.S, ctx.NEW, ctx.reverse
        n_state = CELLS[ctx.cell][1]
        T = dy.shape[0]
        prev_all = tuple(s[1:] if reverse else s[:-1] for s in S)  # (T, B, H) each
        new_all = NEW if NEW is not None else tuple(s[:-1] if reverse else s[1:] for s in S)
        kernel.prepare_backward(prev_all, new_all)
        dy = dy * valid if valid is not None else dy
        if ctx.whole:  # as the forward ran
            ds = kernel.backward_all(reverse, dy, d_final, ctx.prod, hidden_mask, (keep_h, keep_c))
            return _Recurrence._weight_grads(ctx, kernel, prev_all, hidden_mask, ds)
        keeps = [k.unbind(0) if k is not None else None for k in (keep_h, keep_c)[:n_state]]
        dy = dy.unbind(0)
        order = list(range(T)) if reverse else list(range(T - 1, -1, -1))
        ds = list(d_final)  # grads on the state after the current step
        ds[0] = ds[0] + dy[order[0]]
        step = kernel.backward_step
        for n, t in enumerate(order):
            if NEW is not None:
                d_new = [d if k is None else d * k[t] for d, k in zip(ds, keeps)]
                d_hold = [None if k is None else d - dn for d, dn, k in zip(ds, d_new, keeps)]
            else:
                d_new, d_hold = ds, None
            da_t, d_direct = step(t, d_new)
            # the h gradient before step t: through W_hh, plus that step's output gradient dy
            base = dy[order[n + 1]] if n + 1 < T else None
            if hidden_mask is None:
                dh = ctx.prod.back(da_t, base)  # dy_{t-1} + da_t W_hh  (B, H)
            else:
                dh = ctx.prod.back(da_t, None).mul_(hidden_mask)
                if base is not None:
                    dh.add_(base)
            ds = [dh] + [d for d in d_direct[1:]]  # LSTM: dc_{t-1} = dc f (always given)
            if d_direct[0] is not None:
                dh.add_(d_direct[0])
            if d_hold is not None:
                for k, extra in enumerate(d_hold):
                    if extra is not None:
                        ds[k] = ds[k].add_(extra) if k == 0 else ds[k] + extra
        return _Recurrence._weight_grads(ctx, kernel, prev_all, hidden_mask, ds)

    @staticmethod
    def _weight_grads(ctx, kernel, prev_all, hidden_mask, ds):
        """All of backward's gradients, given ``ds`` on the initial states: dW_hh as one product."""
        dgi, da, p_grads = kernel.finish()
        T, B, G = da.shape
        H = prev_all[0].shape[-1]
        h_in_all = prev_all[0] * hidden_mask if hidden_mask is not None else prev_all[0]
        d_w_hh = torch.mm(da.reshape(T * B, G).t(), h_in_all.reshape(T * B, H))  # (G, H)
        assert len(p_grads) == len(CELLS[ctx.cell][3])
        return (None, None, dgi, d_w_hh, None, None, None, None, *ds, *p_grads)


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

    cell: one of ``CELLS`` (``rnn_tanh``, ``rnn_relu``, ``lstm``, ``gru``, ``ln_lstm``,
    ``ln_lstm_x``, ``ln_gru``).
    gi (T, B, G): input projections (for rnn/lstm/ln_lstm with both biases folded in; for gru and
    ln_gru with ``b_ih`` only; for ln_lstm_x ``W_ih x`` alone, before the input layer norm).
    state: (h0,) or (h0, c0), each (B, H). w_hh (G, H). params: the cell's extra tensors in
    ``CELLS`` order (gru: ``b_hh``; ln_lstm: ``γ_hh, γ_c, β_c``; ln_lstm_x: those and ``γ_ih,
    shift``, the input LN's gain and shift; ln_gru: ``γ_hh, b_hh``). hidden_mask (B, H); keep
    (T, B, 1 or H) or a tuple per state; valid (T, B, 1).
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
    return gru_gates(gi, F.linear(h_in, w_hh, b_hh), h)  # gh (B, 3H)


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

    def _fused_inputs(self, x: Tensor, w: dict, layer: int, reverse: bool, loop: bool):
        """(cell, gi, params) for this direction; ``loop``: for the readable reference path."""
        return (self.fused_cell, *self._gi_and_params(x, w, layer, reverse))

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
        loop = self.backend == "loop" or w["w_hr"] is not None
        cell, gi, params = self._fused_inputs(x, w, layer, reverse, loop)
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
        if loop:
            step = self._reference_step(w_hh, w, params)
            return reference_recurrence(step, gi, state, **kw)
        dtype = gi.dtype  # under autocast gi may be bf16 while the weights are float32
        params = tuple(None if p is None else p.to(dtype) for p in params)
        state = tuple(s.to(dtype) for s in state)
        return fused_recurrence(cell, gi, state, w_hh.to(dtype), params, **kw)


class FusedRNN(FusedMixin, RNN):
    """``rnnkit.RNN`` on the fused recurrence, with recurrent dropout (see :class:`FusedMixin`)."""


class FusedLSTM(FusedMixin, LSTM):
    """``rnnkit.LSTM`` on the fused recurrence, with recurrent dropout (see :class:`FusedMixin`)."""


class FusedGRU(FusedMixin, GRU):
    """``rnnkit.GRU`` on the fused recurrence, with recurrent dropout (see :class:`FusedMixin`)."""
