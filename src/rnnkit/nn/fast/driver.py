"""The autograd driver: one ``torch.autograd.Function`` per sequence, with hand-written BPTT.

A Python loop over a cell written with autograd records ~10 small ops per step and replays them one
by one in backward, and its weight gradient is T small matrix products. Here the forward runs the
time loop itself, writing into preallocated buffers only what the backward needs, and the backward
is backpropagation through time written out by hand (the formulas of ``rnnkit.scratch``):

* per step, only the work that truly depends on the previous step: ``da_t`` from the incoming state
  gradient and ``dh_{t-1} = da_t W_hh``;
* the weight gradient is ONE matrix product over all time steps: ``dW_hh = da^T h_in`` with ``da``
  (T*B, G) and ``h_in`` (T*B, H).

The driver owns time, direction, masks and ``W_hh``; a kernel (one per cell, `.registry`)
owns one step's arithmetic:

    forward_step(t, h_in, prod, prev, new)  reads gi[t], writes the new states into ``new`` (a list
                                            of (B, H) views), keeps what backward needs at t
    prepare_backward(prev_all, new_all)     precomputation over all T before the backward loop
    backward_step(t, d_new) -> (da_t, direct gradients on the previous states)
                                            da_t is the gradient of a_t = h_in W_hh^T
    finish() -> (dgi (T, B, G), da (T, B, G), gradients of the cell's own parameters)

A compiled kernel has ``forward_all`` / ``backward_all`` instead of the two step methods: it runs
the loops below in C++ (`.compiled`), in the same order.

Masks, all optional, all constants (the layers draw them; see ``rnnkit.nn.dropout``):

* ``hidden_mask`` (B, H): variational dropout (Gal & Ghahramani 2016): ``h_in = h ⊙ m``, the same
  mask at every step; only the input of ``W_hh`` is dropped, never the carried state.
* ``keep`` (T, B, 1 or H) per state tensor: ``s_t = s_{t-1} + k_t ⊙ (s'_t - s_{t-1})``. Zoneout
  (Krueger et al. 2017) gives Bernoulli ``k`` in training and ``k = 1 - p`` in eval.
* ``lengths`` (B,): past each sequence's end the state is held (``k = 0``) and the output is zero.

``reverse=True`` runs from ``t = T-1`` down to 0 (with lengths this is exactly what
``pack_padded_sequence`` gives for the backward direction). The input projection
``gi = W_ih x + b`` is not part of the Function: the caller computes it for all steps in one matrix
product (autograd then does its backward as one product too).

Shapes: T time, B batch, H hidden, G = gates * H. gi (T, B, G), states (B, H), output (T, B, H).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.nn._checks import check_choice
from rnnkit.nn.fast.products import Products, weight_grad
from rnnkit.nn.fast.registry import KERNELS
from rnnkit.nn.loop import length_mask
from rnnkit.nn.paths import COMPILED, choose_path


class Recurrence(torch.autograd.Function):
    """forward(cell, compiled, reverse, gi, w_hh, hidden_mask, valid, keep_h, keep_c, *states,
    *params) -> (out, *final states). ``valid`` (T, B, 1) zeroes the output past each end."""

    @staticmethod
    def forward(ctx, cell, compiled, reverse, gi, w_hh, hidden_mask, valid, keep_h, keep_c, *rest):
        # the kernels write into preallocated buffers (out=), which autocast does not allow; the
        # caller has already cast everything to gi's dtype, so autocast has nothing left to do
        with torch.autocast(gi.device.type, enabled=False):
            return Recurrence._forward(ctx, cell, compiled, reverse, gi, w_hh, hidden_mask, valid,
                                       keep_h, keep_c, *rest)

    @staticmethod
    def _forward(ctx, cell, compiled, reverse, gi, w_hh, hidden_mask, valid, keep_h, keep_c, *rest):
        run = run_forward(cell, compiled, reverse, gi, w_hh, hidden_mask, keep_h, keep_c, rest,
                          save=any(ctx.needs_input_grad))
        kernel, S, NEW, prod = run
        ctx.kernel, ctx.S, ctx.NEW, ctx.spec, ctx.reverse, ctx.prod = (
            kernel, S, NEW, KERNELS[cell], reverse, prod)
        ctx.save_for_backward(w_hh, hidden_mask, valid, keep_h, keep_c)
        return outputs(S, reverse, valid, copy=True)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, *d_final):
        with torch.autocast(dy.device.type, enabled=False):
            return Recurrence._backward(ctx, dy, *d_final)

    @staticmethod
    def _backward(ctx, dy, *d_final):
        w_hh, hidden_mask, valid, keep_h, keep_c = ctx.saved_tensors
        kernel, S, NEW, reverse = ctx.kernel, ctx.S, ctx.NEW, ctx.reverse
        prev_all = tuple(s[1:] if reverse else s[:-1] for s in S)  # (T, B, H) each
        new_all = NEW if NEW is not None else tuple(s[:-1] if reverse else s[1:] for s in S)
        kernel.prepare_backward(prev_all, new_all)
        dy = dy * valid if valid is not None else dy
        keeps = (keep_h, keep_c)[: ctx.spec.n_state]
        if hasattr(kernel, "backward_all"):  # as the forward ran
            ds = kernel.backward_all(reverse, dy, d_final, ctx.prod, hidden_mask, (keep_h, keep_c))
        else:
            ds = _backward_loop(kernel, ctx.prod, dy, d_final, reverse, hidden_mask, keeps,
                                blend=NEW is not None)
        dgi, da, p_grads = kernel.finish()
        T, B, G = da.shape
        H = prev_all[0].shape[-1]
        h_in_all = prev_all[0] * hidden_mask if hidden_mask is not None else prev_all[0]
        d_w_hh = weight_grad(da.reshape(T * B, G), h_in_all.reshape(T * B, H))  # (G, H)
        assert len(p_grads) == len(ctx.spec.params)
        return (None, None, None, dgi, d_w_hh, None, None, None, None, *ds, *p_grads)


def run_forward(cell, compiled, reverse, gi, w_hh, hidden_mask, keep_h, keep_c, rest, save):
    """The forward over all steps: (kernel, S, NEW, products). ``save=False``: keep nothing for
    backward (the kernels then work in one-step buffers) and take the state buffers ``S`` fresh
    rather than from the pool, since the outputs are views of them."""
    spec = KERNELS[cell]
    states, params = rest[: spec.n_state], rest[spec.n_state :]
    make = spec.compiled if compiled else spec.eager
    kernel = make(gi, params, save)
    T, B, _ = gi.shape
    H = w_hh.shape[1]
    keeps = (keep_h, keep_c)[: spec.n_state]
    blend = any(k is not None for k in keeps)
    # S[k][j]: state k between steps. Forward: step t reads j = t, writes j = t + 1; reverse:
    # reads j = t + 1, writes j = t. So S[:-1] / S[1:] line up with t either way.
    take = kernel.take if save else (lambda shape, like: like.new_empty(shape))
    S = [take((T + 1, B, H), gi) for _ in range(spec.n_state)]
    for s, s0 in zip(S, states):
        s[T if reverse else 0] = s0
    NEW = [kernel.take((T, B, H), gi) for _ in range(spec.n_state)] if blend else None
    prod = Products(w_hh, B, steps=T)
    if hasattr(kernel, "forward_all"):  # the kernel runs the time loop itself (compiled)
        kernel.forward_all(reverse, S, prod, hidden_mask, (keep_h, keep_c), NEW)
    else:
        _forward_loop(kernel, prod, S, NEW, reverse, hidden_mask, keeps)
    return kernel, S, NEW, prod


def outputs(S, reverse: bool, valid, copy: bool) -> tuple:
    """(out (T, B, H), *final states) from the state buffers; ``copy``: not views of S (which
    go back to the pool when the graph is freed)."""
    T = S[0].shape[0] - 1
    out = S[0][:-1] if reverse else S[0][1:]  # (T, B, H)
    if valid is not None:
        out = out * valid
    elif copy:
        out = out.clone()
    j_last = 0 if reverse else T
    return (out, *(s[j_last].clone() for s in S))


def _infer(cell, compiled, reverse, gi, w_hh, hidden_mask, valid, keep_h, keep_c, *rest):
    """The forward alone, outside autograd, when no input wants a gradient (``torch.no_grad``,
    ``torch.inference_mode``, or nothing requires grad): nothing is kept for backward."""
    with torch.autocast(gi.device.type, enabled=False):
        _, S, _, _ = run_forward(cell, compiled, reverse, gi, w_hh, hidden_mask, keep_h, keep_c,
                                 rest, save=False)
        return outputs(S, reverse, valid, copy=False)


def _forward_loop(kernel, prod, S, NEW, reverse, hidden_mask, keeps):
    """The forward's time loop in Python, one ``kernel.forward_step`` per step."""
    T = S[0].shape[0] - 1
    keeps = [k.unbind(0) if k is not None else None for k in keeps]
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


def _backward_loop(kernel, prod, dy, d_final, reverse, hidden_mask, keeps, blend):
    """The backward's time loop in Python; returns the gradients on the initial states."""
    keeps = [k.unbind(0) if k is not None else None for k in keeps]
    T = dy.shape[0]
    dy = dy.unbind(0)
    order = list(range(T)) if reverse else list(range(T - 1, -1, -1))
    ds = list(d_final)  # grads on the state after the current step
    ds[0] = ds[0] + dy[order[0]]
    for n, t in enumerate(order):
        if blend:  # the gradient on s_t splits into k_t d (to s'_t) and d - k_t d (to s_{t-1})
            d_new = [d if k is None else d * k[t] for d, k in zip(ds, keeps)]
            d_hold = [None if k is None else d - dn for d, dn, k in zip(ds, d_new, keeps)]
        else:
            d_new, d_hold = ds, None
        da_t, d_direct = kernel.backward_step(t, d_new)
        # the h gradient before step t: through W_hh, plus that step's output gradient dy
        base = dy[order[n + 1]] if n + 1 < T else None
        if hidden_mask is None:
            dh = prod.back(da_t, base)  # dy_{t-1} + da_t W_hh  (B, H)
        else:
            dh = prod.back(da_t, None).mul_(hidden_mask)
            if base is not None:
                dh.add_(base)
        ds = [dh] + [d for d in d_direct[1:]]  # LSTM: dc_{t-1} = dc f (always given)
        if d_direct[0] is not None:
            dh.add_(d_direct[0])
        if d_hold is not None:
            for k, extra in enumerate(d_hold):
                if extra is not None:
                    ds[k] = ds[k].add_(extra) if k == 0 else ds[k] + extra
    return ds


def keeps_per_state(keep, n_state: int) -> tuple:
    """``keep`` as (keep_h, keep_c): one tensor serves every state, a tuple gives one per state."""
    if keep is None:
        return (None, None)
    if isinstance(keep, Tensor):
        return (keep, keep if n_state == 2 else None)
    keep = tuple(keep) + (None,) * (2 - len(keep))
    return keep[:2]


def recurrence(
    cell: str,
    gi: Tensor,
    state: tuple[Tensor, ...],
    w_hh: Tensor,
    params: tuple[Tensor | None, ...] = (),
    *,
    reverse: bool = False,
    lengths: Tensor | None = None,
    keep: Tensor | tuple[Tensor | None, ...] | None = None,
    hidden_mask: Tensor | None = None,
    compiled: bool | None = None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One direction of one layer on the fast path; what ``rnnkit.nn.loop.scan`` computes.

    cell: a name in ``KERNELS`` (``rnn_tanh``, ``rnn_relu``, ``lstm``, ``gru``, ``ln_lstm``,
    ``ln_lstm_x``, ``ln_gru``). gi (T, B, G): input projections (rnn, lstm, ln_lstm: both biases
    folded in; gru, ln_gru: ``b_ih`` only; ln_lstm_x: ``W_ih x`` alone, before the input layer
    norm). state: (h0,) or (h0, c0), each (B, H). w_hh (G, H). params: the cell's tensors in
    ``KERNELS[cell].params`` order (gru: ``b_hh``; ln_lstm: ``γ_hh, γ_c, β_c``; ln_lstm_x: those
    and ``γ_ih, shift``; ln_gru: ``γ_hh, b_hh``). lengths (B,); keep (T, B, 1 or H) or one per
    state (zoneout's update fractions); hidden_mask (B, H). compiled: the C++ kernel (True),
    the eager one (False), or as `rnnkit.nn.paths.choose_path` decides (None).
    Returns (out (T, B, H), final state tuple).
    """
    spec = check_arguments(cell, gi, state, w_hh, params)
    if compiled is None:
        compiled = choose_path("auto", gi, fast_cell=cell) == COMPILED
    elif compiled and choose_path("auto", gi, fast_cell=cell, compiled=True) != COMPILED:
        raise ValueError(
            f"compiled=True: no compiled kernel takes cell {cell!r} on {gi.device.type} "
            f"{gi.dtype}; expected one of "
            f"{', '.join(repr(c) for c, k in KERNELS.items() if k.compiled)} on cpu "
            "float32/float64"
        )
    keep_h, keep_c = keeps_per_state(keep, spec.n_state)
    valid = None
    if lengths is not None:  # past each end: state held (k = 0), output zero
        valid = length_mask(lengths, gi.shape[0], gi.device).to(gi.dtype)  # (T, B, 1)
        keep_h = valid if keep_h is None else keep_h * valid
        if spec.n_state == 2:
            keep_c = valid if keep_c is None else keep_c * valid
    args = (cell, compiled, reverse, gi.contiguous(), w_hh, hidden_mask, valid, keep_h, keep_c,
            *(s.contiguous() for s in state), *params)
    wants_grad = torch.is_grad_enabled() and any(
        isinstance(a, Tensor) and a.requires_grad for a in args)
    out, *final = Recurrence.apply(*args) if wants_grad else _infer(*args)
    return out, tuple(final)


def check_arguments(cell: str, gi: Tensor, state: tuple, w_hh: Tensor, params: tuple):
    """The cell's entry in ``KERNELS``, after checking what `recurrence` was given."""
    check_choice("cell", cell, tuple(KERNELS))
    spec = KERNELS[cell]
    if len(state) != spec.n_state:
        raise ValueError(f"cell {cell!r} takes {spec.n_state} state tensor(s), got {len(state)}")
    if len(params) != len(spec.params):
        raise ValueError(
            f"cell {cell!r} takes params ({', '.join(spec.params)}), got {len(params)} tensor(s)"
        )
    G = spec.gates * w_hh.shape[1]
    if gi.dim() != 3 or gi.shape[-1] != G or w_hh.shape[0] != G:
        raise ValueError(
            f"cell {cell!r}: expected gi (T, B, {spec.gates}H) and w_hh ({spec.gates}H, H); "
            f"got gi {list(gi.shape)} and w_hh {list(w_hh.shape)}"
        )
    return spec
