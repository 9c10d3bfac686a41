"""Gradient flow through time: the norm of dLoss/dh_t for every step t (the picture of vanishing and
exploding gradients; Bengio et al. 1994, Pascanu et al. 2013).

A fused RNN layer computes all steps in one call, so its intermediate states are not tensors one can
ask the gradient of. `StepwiseRNN` runs the same weights through rnnkit's readable loop
(`rnnkit.nn.loop.scan` over the step functions of `rnnkit.nn.cells`, gate order as torch.nn:
LSTM i, f, g, o; GRU r, z, n):

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
from functools import partial

import torch
from jaxtyping import Float
from matplotlib.figure import Figure
from torch import Tensor, nn

from rnnkit.nn.cells import input_projection, layer_step
from rnnkit.nn.loop import State, Step, run_layers, scan


def _mode(rnn: nn.Module) -> str:
    mode = getattr(rnn, "mode", None) or type(rnn).__name__.upper()
    if mode == "RNN":
        mode = "RNN_RELU" if getattr(rnn, "nonlinearity", "tanh") == "relu" else "RNN_TANH"
    if mode not in ("RNN_TANH", "RNN_RELU", "LSTM", "GRU"):
        raise TypeError(f"expected an RNN, LSTM or GRU layer (torch.nn or rnnkit.nn), got {type(rnn).__name__}")
    return mode


def _recording(step: Step, seen: list[State]) -> Step:
    """``step``, keeping each state it is given: the carried state of the step before (after the
    length mask), the very tensor that step's output and the next step read."""

    def run(gi_t: Tensor, state: State) -> State:
        seen.append(state)
        return step(gi_t, state)

    return run


class StepwiseRNN(nn.Module):
    """The same layer run one step at a time, keeping every state (for gradients and heat maps).

    Called like the layer it wraps: ``forward(input, hx=None, *, lengths=None) -> (output, h_n)``,
    with the same layout (``batch_first`` honoured) and the same results up to rounding. After a
    call, ``states[l][d]`` is the list of T hidden states (B, H) of layer l, direction d, at time
    positions 0..T-1, and ``cells`` the LSTM cell states likewise.

    It runs the readable loop (``rnnkit.nn.loop.scan`` over ``rnnkit.nn.cells.layer_step``, the
    equations of every rnnkit layer) on the wrapped layer's weights, and records the state each
    step is handed: that tensor feeds both the output at t and step t+1, so autograd's gradient
    with respect to it is the total ``∂L/∂h_t``.
    """

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.mode = _mode(rnn)
        self.rnn = rnn  # parameters stay shared with the wrapped layer
        self.states: list[list[list[Tensor]]] = []
        self.cells: list[list[list[Tensor]]] = []

    def _weights(self, layer: int, direction: int) -> dict:
        """The weights of one layer and direction, named as ``rnnkit.nn.cells.layer_step`` wants."""
        sfx = f"l{layer}" + ("_reverse" if direction else "")
        return {name: getattr(self.rnn, f"{attr}_{sfx}", None)  # a bias or projection may be absent
                for name, attr in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
                                   ("b_hh", "bias_hh"), ("w_hr", "weight_hr"))}

    def _initial_state(self, rows: int, B: int, x: Tensor) -> State:
        """What the wrapped layer starts from without hx: zeros, or rnnkit's init_state choice."""
        rnn, init = self.rnn, getattr(self.rnn, "init_state", "zeros")
        names = ("h0", "c0") if self.mode == "LSTM" else ("h0",)
        widths = (getattr(rnn, "proj_size", 0) or rnn.hidden_size, rnn.hidden_size)
        if init == "learned":  # parameters (L*D, H), shared by every sequence
            return tuple(getattr(rnn, n).unsqueeze(1).expand(-1, B, -1).to(x.dtype) for n in names)
        make = torch.randn if (init == "random" and rnn.training) else torch.zeros
        return tuple(make(rows, B, w, dtype=x.dtype, device=x.device) for _, w in zip(names, widths))

    def _run_direction(self, x: Tensor, state: State, layer: int, reverse: bool,
                       lengths: Tensor | None) -> tuple[Tensor, State]:
        """One layer, one direction through ``scan``, recording the state of every step."""
        w = self._weights(layer, int(reverse))
        gi = input_projection(self.mode, x, w)  # (T, B, G)
        seen: list[State] = []
        out, final = scan(_recording(layer_step(self.mode, w, w["w_hh"]), seen), gi, state,
                          lengths, reverse)
        carried = seen[1:] + [final]  # the state after each step, in the order the steps ran
        if reverse:
            carried.reverse()
        self.states[layer].append([s[0] for s in carried])
        self.cells[layer].append([s[1] if len(s) > 1 else None for s in carried])
        return out, final

    def forward(self, input: Tensor, hx=None, *, lengths: Tensor | None = None):
        rnn = self.rnn
        if isinstance(input, nn.utils.rnn.PackedSequence):
            raise TypeError("StepwiseRNN takes a padded tensor and lengths=, not a PackedSequence")
        x = input.transpose(0, 1) if rnn.batch_first else input  # (T, B, I)
        L, D = rnn.num_layers, 2 if rnn.bidirectional else 1
        if hx is None:
            hx = self._initial_state(L * D, x.size(1), x)
        else:  # a state tuple, as scan takes it: (h, c) for an LSTM, (h,) otherwise
            hx = tuple(hx) if self.mode == "LSTM" else (hx,)
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=x.device)
        self.states = [[] for _ in range(L)]
        self.cells = [[] for _ in range(L)]
        out, h_n = run_layers(partial(self._run_direction, lengths=lengths), x, hx, L, D,
                              rnn.dropout if rnn.training else 0.0)
        output = out.transpose(0, 1) if rnn.batch_first else out
        return output, (h_n if self.mode == "LSTM" else h_n[0])


@contextmanager
def stepwise(model: nn.Module, attr: str = "rnn") -> Iterator[StepwiseRNN]:
    """Temporarily replace ``model.<attr>`` by a `StepwiseRNN` of it."""
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

    The y limits come from the data (`log_limits`, or ``ylim``), so every line stays inside
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
