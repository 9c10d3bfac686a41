"""Gradient flow through time: the norm of dLoss/dh_t for every step t (the picture of vanishing and
exploding gradients; Bengio et al. 1994, Pascanu et al. 2013).

A fused RNN layer computes all steps in one call, so its intermediate states are not tensors one can
ask the gradient of. :class:`StepwiseRNN` runs the same weights one step at a time with the cell
equations written out (gate order as torch.nn: LSTM i, f, g, o; GRU r, z, n):

    Elman: h' = tanh(W_ih x + b_ih + W_hh h + b_hh)                 (relu if nonlinearity="relu")
    LSTM:  i, f, g, o = σ, σ, tanh, σ of (W_ih x + b_ih + W_hh h + b_hh);  c' = f c + i g;  h' = o tanh c'
    GRU:   r, z = σ(W_ih x + b_ih + W_hh h + b_hh)[r, z];  n = tanh(W_in x + b_in + r (W_hn h + b_hn))
           h' = (1 - z) n + z h

and keeps every state ``h[l, d, t]``. Then ``∂L/∂h[l, d, t]`` is the total derivative: through the
output at t and through every later step (earlier steps for the reverse direction).
"""

from __future__ import annotations

# ruff: noqa: F722 (jaxtyping shape strings such as "B T H" are not Python expressions)
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from jaxtyping import Float
from matplotlib.figure import Figure
from torch import Tensor, nn


def _mode(rnn: nn.Module) -> str:
    mode = getattr(rnn, "mode", None) or type(rnn).__name__.upper()
    if mode == "RNN":
        mode = "RNN_RELU" if getattr(rnn, "nonlinearity", "tanh") == "relu" else "RNN_TANH"
    if mode not in ("RNN_TANH", "RNN_RELU", "LSTM", "GRU"):
        raise TypeError(f"expected an RNN, LSTM or GRU layer (torch.nn or rnnkit.nn), got {type(rnn).__name__}")
    if getattr(rnn, "proj_size", 0):
        raise NotImplementedError("LSTM with proj_size > 0 is not supported for step-by-step unrolling")
    return mode


def _cell_step(mode: str, x: Tensor, state, w_ih, w_hh, b_ih, b_hh):
    """One step of the cell; ``state`` is h, or (h, c) for an LSTM."""
    h = state[0] if mode == "LSTM" else state
    gi = F.linear(x, w_ih, b_ih)  # (B, G*H)
    gh = F.linear(h, w_hh, b_hh)  # (B, G*H)
    if mode == "RNN_TANH":
        return torch.tanh(gi + gh)
    if mode == "RNN_RELU":
        return torch.relu(gi + gh)
    if mode == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, dim=1)  # each (B, H)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


class StepwiseRNN(nn.Module):
    """The same layer run one step at a time, keeping every state (for gradients and heat maps).

    Called like the layer it wraps: ``forward(input, hx=None, *, lengths=None) -> (output, h_n)``,
    with the same layout (``batch_first`` honoured) and the same results up to rounding. After a
    call, ``states[l][d]`` is the list of T hidden states (B, H) of layer l, direction d, at time
    positions 0..T-1, and ``cells`` the LSTM cell states likewise.
    """

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.mode = _mode(rnn)
        self.rnn = rnn  # parameters stay shared with the wrapped layer
        self.states: list[list[list[Tensor]]] = []
        self.cells: list[list[list[Tensor]]] = []

    def _weights(self, layer: int, direction: int):
        sfx = f"l{layer}" + ("_reverse" if direction else "")
        get = lambda name: getattr(self.rnn, f"{name}_{sfx}", None)  # noqa: E731 (bias may be absent)
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def _initial_state(self, rows: int, B: int, H: int, x: Tensor):
        """What the wrapped layer starts from without hx: zeros, or rnnkit's init_state choice."""
        init = getattr(self.rnn, "init_state", "zeros")
        names = ("h0", "c0") if self.mode == "LSTM" else ("h0",)
        if init == "learned":  # parameters (L*D, H), shared by every sequence
            states = [getattr(self.rnn, n).unsqueeze(1).expand(-1, B, -1).to(x.dtype) for n in names]
        else:
            make = torch.randn if (init == "random" and self.rnn.training) else torch.zeros
            states = [make(rows, B, H, dtype=x.dtype, device=x.device) for _ in names]
        return tuple(states) if self.mode == "LSTM" else states[0]

    def forward(self, input: Tensor, hx=None, *, lengths: Tensor | None = None):
        rnn, mode = self.rnn, self.mode
        if isinstance(input, nn.utils.rnn.PackedSequence):
            raise TypeError("StepwiseRNN takes a padded tensor and lengths=, not a PackedSequence")
        x = input.transpose(0, 1) if rnn.batch_first else input  # (T, B, I)
        T, B = x.shape[:2]
        L, D, H = rnn.num_layers, 2 if rnn.bidirectional else 1, rnn.hidden_size
        if hx is None:
            hx = self._initial_state(L * D, B, H, x)
        h0, c0 = hx if mode == "LSTM" else (hx, None)
        # alive[t] (B, 1): step t is a real step of sequence b; past the end the state is held
        alive = None
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=x.device)
            alive = (torch.arange(T, device=x.device)[:, None] < lengths[None, :])[..., None]  # (T, B, 1)
        self.states = [[[] for _ in range(D)] for _ in range(L)]
        self.cells = [[[] for _ in range(D)] for _ in range(L)]
        h_n, c_n = [], []
        layer_in = x
        for layer in range(L):
            outs = []
            for d in range(D):
                w = self._weights(layer, d)
                k = layer * D + d
                state = (h0[k], c0[k]) if mode == "LSTM" else h0[k]
                out_t: list[Tensor | None] = [None] * T
                cell_t: list[Tensor | None] = [None] * T
                for t in range(T) if d == 0 else range(T - 1, -1, -1):
                    new = _cell_step(mode, layer_in[t], state, *w)
                    if alive is not None:  # past a sequence's end the state is held unchanged
                        if mode == "LSTM":
                            new = tuple(torch.where(alive[t], n, s) for n, s in zip(new, state))
                        else:
                            new = torch.where(alive[t], new, state)
                    state = new
                    out_t[t] = state[0] if mode == "LSTM" else state
                    cell_t[t] = state[1] if mode == "LSTM" else None
                self.states[layer][d] = out_t
                self.cells[layer][d] = cell_t
                # the state after the loop is the final one: last real step (fwd), step 0 (bwd)
                h_n.append(state[0] if mode == "LSTM" else state)
                if mode == "LSTM":
                    c_n.append(state[1])
                out = torch.stack(out_t)  # (T, B, H)
                if alive is not None:  # torch.nn pads outputs with zeros
                    out = out * alive
                outs.append(out)
            layer_in = torch.cat(outs, dim=2)  # (T, B, D*H)
            if layer < L - 1 and rnn.dropout and self.training:
                layer_in = F.dropout(layer_in, rnn.dropout, training=True)
        h_n_t = torch.stack(h_n)  # (L*D, B, H)
        output = layer_in.transpose(0, 1) if rnn.batch_first else layer_in
        return output, ((h_n_t, torch.stack(c_n)) if mode == "LSTM" else h_n_t)


@contextmanager
def stepwise(model: nn.Module, attr: str = "rnn") -> Iterator[StepwiseRNN]:
    """Temporarily replace ``model.<attr>`` by a :class:`StepwiseRNN` of it."""
    layer = getattr(model, attr, None)
    if layer is None:
        raise AttributeError(f"{type(model).__name__} has no recurrent layer named {attr!r}")
    wrapped = StepwiseRNN(layer)
    setattr(model, attr, wrapped)
    try:
        yield wrapped
    finally:
        setattr(model, attr, layer)


def hidden_gradient_norms(
    model: nn.Module, compute_loss: Callable[[nn.Module], Tensor], attr: str = "rnn"
) -> Float[Tensor, "L D T"]:
    """``‖∂L/∂h[l, d, t]‖`` (Frobenius over batch and hidden units) for every layer, direction, step.

    ``compute_loss(model)`` runs the model on a batch and returns the scalar loss; the recurrent
    layer ``model.<attr>`` is unrolled step by step for that call. The model's parameter gradients
    are not touched.
    """
    with stepwise(model, attr) as unrolled:
        loss = compute_loss(model)
    flat = [h for layer in unrolled.states for direction in layer for h in direction]
    grads = torch.autograd.grad(loss, flat, allow_unused=True)
    norms = torch.stack([g.norm() if g is not None else torch.zeros(()) for g in grads])
    L, D = len(unrolled.states), len(unrolled.states[0])
    return norms.reshape(L, D, -1).detach()  # (L, D, T)


def log_limits(curves: dict[str, Tensor]) -> tuple[float, float]:
    """Limits of a log axis that hold every finite positive value of the curves, with a third of a
    decade to spare at both ends (taken from the data: a norm can fall by 10^8 or more)."""
    values = torch.cat([torch.as_tensor(v).detach().double().flatten() for v in curves.values()])
    shown = values[torch.isfinite(values) & (values > 0)]
    if shown.numel() == 0:
        return 0.1, 10.0
    return float(shown.min()) / 3, float(shown.max()) * 3


def plot_gradient_norms(
    curves: dict[str, Tensor],
    title: str = "Gradient flow: ‖∂L/∂h_t‖ per time step",
    ax=None,
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """Line plot of gradient norm (log scale) against time step, one line per named curve (T,).

    The y limits come from the data (:func:`log_limits`, or ``ylim``), so every line stays inside
    the axis. A norm of exactly 0 (underflow) has no place on a log scale: it is drawn on the bottom
    edge, an infinite one on the top edge, and a note under the axis says so.
    """
    fig = ax.figure if ax is not None else Figure(figsize=(7, 4), layout="constrained")
    ax = ax if ax is not None else fig.add_subplot()
    bottom, top = ylim if ylim is not None else log_limits(curves)
    edges = set()
    for name, values in curves.items():
        v = torch.as_tensor(values).detach().double()
        if (v <= 0).any():
            edges.add("0 drawn on the bottom edge")
        if (v == float("inf")).any():
            edges.add("∞ drawn on the top edge")
        ax.plot(range(len(v)), v.clamp(bottom, top).numpy(), label=name, linewidth=1.5)
    ax.set_yscale("log")
    ax.set_ylim(bottom, top)
    ax.set_xlabel("time step t" + (f"\n(norms of {' and '.join(sorted(edges))})" if edges else ""))
    ax.set_ylabel("‖∂L/∂hₜ‖")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return fig
