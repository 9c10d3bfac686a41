"""Traceable forwards of rnnkit's recurrent layers, as functions of their parameters.

Each function takes the parameters by their torch.nn names (``weight_ih_l0``, ``bias_hh_l1_reverse``,
``ln_hh_weight_l0``...) in a dict, the layer's static configuration, and the inputs, and computes
what the layer computes in eval mode, with the time loop of `rnnkit.export.scan` instead of a
Python ``for``. The step equations are rnnkit's own (``rnnkit.nn.cells``, ``rnnkit.nn.layernorm``),
so there is one copy of each cell; only the loop differs.

Kinds (gate orders as torch.nn: LSTM i, f, g, o; GRU r, z, n):

* ``rnn_tanh``, ``rnn_relu``: ``h' = σ(W_ih x + b_ih + W_hh h + b_hh)``
* ``lstm``:   ``c' = σ(f) c + σ(i) tanh(g)``, ``h' = σ(o) tanh(c')`` (``h' = W_hr h'`` with proj_size)
* ``gru``:    ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))``, ``h' = (1 - z) n + z h``
* ``ln_lstm``, ``ln_gru``: the same with layer norm on both products (Ba et al. 2016)

Shapes: T time, B batch, I input, H hidden, H_out = proj_size or H, D directions, L layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.export.scan import Lane, State, linear_scan, scan_lanes, time_loop
from rnnkit.nn.cells import gru_step, lstm_step, rnn_step
from rnnkit.nn.layernorm import layer_norm, ln_gru_step, ln_lstm_step
from rnnkit.nn.loop import length_mask

#: gates per kind: the row blocks of weight_ih
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3, "ln_lstm": 4, "ln_gru": 3}
Params = dict[str, Tensor]


@dataclass(frozen=True)
class Stack:
    """The static shape of a stacked recurrent layer (what torch.nn's constructor fixes)."""

    kind: str
    num_layers: int
    hidden_size: int
    bidirectional: bool = False
    proj_size: int = 0
    #: zoneout's update fraction 1 - p per state tensor, as eval mode applies it
    keep: tuple[float, ...] = (1.0, 1.0)

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def n_state(self) -> int:
        return 2 if self.kind in ("lstm", "ln_lstm") else 1

    @property
    def out_size(self) -> int:
        return self.proj_size or self.hidden_size

    def suffix(self, layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")


def input_projection(kind: str, p: Params, sfx: str, x: Tensor) -> Tensor:
    """The step-independent part of every step at once: x (T, B, I) -> (T, B, G)."""
    w_ih, b_ih, b_hh = p[f"weight_ih{sfx}"], p.get(f"bias_ih{sfx}"), p.get(f"bias_hh{sfx}")
    if kind == "gru":
        return F.linear(x, w_ih, b_ih)  # b_hh stays inside the reset gate's product
    if kind == "ln_gru":
        return p[f"ln_ih_weight{sfx}"] * layer_norm(F.linear(x, w_ih)) + (0 if b_ih is None else b_ih)
    both = None if b_ih is None else b_ih + b_hh  # RNN, LSTM: both biases add before σ
    if kind == "ln_lstm":
        return p[f"ln_ih_weight{sfx}"] * layer_norm(F.linear(x, w_ih)) + (0 if both is None else both)
    return F.linear(x, w_ih, both)


def make_step(kind: str, p: Params, sfx: str):
    """step(gi_t, state) -> new state for one direction of one layer."""
    w_hh, w_hr = p[f"weight_hh{sfx}"], p.get(f"weight_hr{sfx}")
    if kind in ("rnn_tanh", "rnn_relu"):
        nl = "tanh" if kind == "rnn_tanh" else "relu"
        return lambda g, s: (rnn_step(g[0], s[0], w_hh, nl),)
    if kind == "lstm":
        return lambda g, s: lstm_step(g[0], s[0], s[1], w_hh, w_hr)
    if kind == "gru":
        b_hh = p.get(f"bias_hh{sfx}")
        return lambda g, s: (gru_step(g[0], s[0], w_hh, b_hh),)
    g_hh = p[f"ln_hh_weight{sfx}"]
    if kind == "ln_gru":
        b_hh = p.get(f"bias_hh{sfx}")
        return lambda g, s: (ln_gru_step(g[0], s[0], s[0], w_hh, g_hh, b_hh),)
    g_c = p[f"ln_cell_weight{sfx}"]
    b_c = p.get(f"ln_cell_bias{sfx}")
    b_c = torch.zeros_like(g_c) if b_c is None else b_c  # bias=False: no shift, as the layer does
    return lambda g, s: ln_lstm_step(g[0], s[0], s[1], w_hh, g_hh, g_c, b_c, w_hr)


def lane(stack: Stack, p: Params, sfx: str, x: Tensor, state: State, valid: Tensor | None,
         reverse: bool = False) -> Lane:
    """One direction of one layer as a scan lane; the reverse direction reads x flipped in time."""
    gi = input_projection(stack.kind, p, sfx, x)  # (T, B, G)
    if reverse:
        gi, valid = gi.flip(0), (None if valid is None else valid.flip(0))
    return Lane(make_step(stack.kind, p, sfx), (gi,), state, valid, stack.keep[: stack.n_state])


def run_stack(
    stack: Stack, p: Params, x: Tensor, hx: State, lengths: Tensor | None = None
) -> tuple[Tensor, State]:
    """All layers and directions. x (T, B, I), hx tuple of (L*D, B, ·) -> (out, h_n tuple).

    out (T, B, D*H_out), zero past each length; h_n, c_n (L*D, B, ·) at each last valid step.
    Both directions of a layer run in one scan. Reading a flipped sequence with the same masks
    is what the reverse direction does in eager: each sequence starts at its own last valid step.
    """
    valid = length_mask(lengths, x.shape[0])
    D = stack.directions
    finals: list[list[Tensor]] = [[] for _ in hx]
    for layer in range(stack.num_layers):
        lanes = [lane(stack, p, stack.suffix(layer, d), x, tuple(h[layer * D + d] for h in hx),
                      valid, reverse=d == 1) for d in range(D)]
        results = scan_lanes(lanes)
        outs = [out.flip(0) if d == 1 else out for d, (out, _) in enumerate(results)]
        for _, state in results:
            for k, s in enumerate(state):
                finals[k].append(s)
        x = outs[0] if D == 1 else torch.cat(outs, dim=2)  # (T, B, D*H_out)
    return x, tuple(torch.stack(f) for f in finals)


def step_stack(stack: Stack, p: Params, x_t: Tensor, hx: State) -> tuple[Tensor, State]:
    """One time step of a one-directional stack, without a loop: x_t (B, I) -> (y_t, new hx).

    What the layer's ``step()`` computes, for streaming graphs.
    """
    if stack.bidirectional:
        raise ValueError("a streaming step runs forward in time; a bidirectional layer needs the "
                         "whole sequence")
    finals: list[list[Tensor]] = [[] for _ in hx]
    for layer in range(stack.num_layers):
        sfx = stack.suffix(layer, 0)
        gi = input_projection(stack.kind, p, sfx, x_t)  # (B, G)
        state = tuple(h[layer] for h in hx)
        new = make_step(stack.kind, p, sfx)((gi,), state)
        new = tuple(torch.lerp(s, n, k) if k != 1.0 else n
                    for n, s, k in zip(new, state, stack.keep))
        for k, s in enumerate(new):
            finals[k].append(s)
        x_t = new[0]
    return x_t, tuple(torch.stack(f) for f in finals)


def elman_forward(
    kind: str, p: Params, x: Tensor, h0: Tensor, lengths: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``rnnkit.Elman``: x (T, B, I), h0 (B, H) -> (y (T, B, O), h_n (B, H)).

    ``y_t = W_ho h_t + b_ho``, zero past each length.
    """
    valid = length_mask(lengths, x.shape[0])
    gi = input_projection(kind, p, "", x)  # (T, B, H)
    hs, (h_n,) = time_loop(make_step(kind, p, ""), (gi,), (h0,), valid)
    y = F.linear(hs, p["weight_ho"], p.get("bias_ho"))  # (T, B, O)
    return (y if valid is None else y.masked_fill(~valid, 0.0)), h_n


def recurrent_forward(v, q, u, activation, x: Tensor, h0: Tensor, lengths: Tensor | None = None):
    """``rnnkit.Recurrent``: ``h_t = σ(v(x_t) + q(h_{t-1}))``, ``y_t = u(h_t)``; x (T, B, I), h0 (B, H).

    v runs over the whole sequence at once, q inside the loop, u over all states at the end.
    """
    valid = length_mask(lengths, x.shape[0])
    vx = v(x)  # (T, B, H)
    hs, (h_n,) = time_loop(lambda g, s: (activation(g[0] + q(s[0])),), (vx,), (h0,), valid)
    if u is None:
        return hs, h_n
    y = u(hs)  # (T, B, O)
    return (y if valid is None else y.masked_fill(~valid, 0.0)), h_n


def cell_forward(kind: str, p: Params, x: Tensor, state: State) -> State:
    """One step of ``RNNCell`` / ``LSTMCell`` / ``GRUCell``: x (B, I), state of (B, H) -> state."""
    gi = input_projection(kind, p, "", x)  # (B, G)
    return make_step(kind, p, "")((gi,), state)


def min_forward(coefficients, p: Params, num_layers: int, x: Tensor, h0: Tensor):
    """``rnnkit.MinGRU`` / ``MinLSTM``: ``h_t = a_t ⊙ h_{t-1} + b_t`` per layer, stacked.

    ``coefficients(pre) -> (a, b)`` is the layer's own map from ``W_ih x + b_ih``.
    x (T, B, I), h0 (L, B, H) -> (output (T, B, H), h_n (L, B, H)).
    """
    finals = []
    for k in range(num_layers):
        pre = F.linear(x, p[f"weight_ih_l{k}"], p[f"bias_ih_l{k}"])  # (T, B, blocks*H)
        a, b = coefficients(pre)  # (T, B, H) each
        x, h = linear_scan(a, b, h0[k])
        finals.append(h)
    return x, torch.stack(finals)


def min_step(coefficients, p: Params, num_layers: int, x_t: Tensor, h: Tensor):
    """One step of `min_forward` without a loop: x_t (B, I), h (L, B, H) -> (y_t, h)."""
    finals = []
    for k in range(num_layers):
        a, b = coefficients(F.linear(x_t, p[f"weight_ih_l{k}"], p[f"bias_ih_l{k}"]))  # (B, H)
        x_t = torch.addcmul(b, a, h[k])
        finals.append(x_t)
    return x_t, torch.stack(finals)
