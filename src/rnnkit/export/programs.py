"""Exportable programs: an rnnkit layer wrapped in a module whose forward torch.export can trace.

A program holds the layer itself (so its parameters keep their names, ``layer.weight_ih_l0``) and
computes the layer's eval-mode forward with `rnnkit.export.recurrence`. It takes its inputs
flat and positional, in the order of `Program.slots`, ``None`` for an omitted one, and
returns its outputs flat, in the order of `Program.outputs`.

``target="onnx"`` runs plain RNN / LSTM / GRU stacks as ONNX's own operators
(`rnnkit.export.onnx_ops`) and everything else through the scan; ``target="pt2"`` uses the
scan everywhere, so the program needs nothing but torch to run. ``streaming=True`` makes one time
step, ``(x_t, state) -> (y_t, state)``, without a loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from rnnkit.export import onnx_ops
from rnnkit.export.recurrence import (
    Stack,
    cell_forward,
    elman_forward,
    min_forward,
    min_step,
    recurrent_forward,
    run_stack,
    step_stack,
)

TARGETS = ("onnx", "pt2")


@dataclass
class Slot:
    """One graph input: its name, role and dynamic axes, and how to make an example of it.

    role: ``data`` (required), ``state`` (optional: the layer's initial state when omitted; its
    batch axis is ``batch_axis``), ``lengths`` (optional: every sequence full length).
    """

    name: str
    role: str
    axes: dict[int, str]
    make: Callable[[int, int], Tensor]  # (T, B) -> example
    batch_axis: int = 1
    default: Callable[[], Tensor] | None = field(default=None, repr=False)
    rank: int | None = None  # None: the rank of make's example

    def dims(self) -> int:
        return self.rank if self.rank is not None else self.make(3, 2).dim()


def _params(module: nn.Module) -> dict[str, Tensor]:
    return dict(module.named_parameters())


class Program(nn.Module):
    """Base: flat inputs (``slots``) -> flat outputs (``outputs``)."""

    slots: list[Slot]
    outputs: list[str]
    time_axis: int | None = 0  # of the first input; None for one-step programs

    def __init__(self, model: nn.Module, target: str, streaming: bool) -> None:
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
        self.target, self.streaming = target, streaming
        self.model_name = type(model).__name__
        #: the inputs a traced program takes (in slot order); None: all of them
        self.given: tuple[str, ...] | None = None

    def forward(self, *args: Tensor | None):
        """The inputs in slot order: all of them, or exactly those named in ``given``."""
        if self.given is not None and len(args) != len(self.slots):
            named = dict(zip(self.given, args))
            args = tuple(named.get(s.name) for s in self.slots)
        return self.run(*args)

    def run(self, *args: Tensor | None) -> tuple[Tensor, ...]:
        raise NotImplementedError

    @property
    def onnx(self) -> bool:
        return self.target == "onnx"

    def eager(self, inputs: dict[str, Tensor | None]) -> tuple[Tensor, ...]:
        """The wrapped model's own eager call on the named inputs, outputs flattened as ours."""
        raise NotImplementedError


def flatten(out) -> tuple[Tensor, ...]:
    """(output, (h_n, c_n)) / (output, h_n) / tensor -> a flat tuple of tensors."""
    if isinstance(out, Tensor):
        return (out,)
    return tuple(t for item in out for t in flatten(item))


def _states(inputs: dict, names: tuple[str, ...]):
    """hx as the eager layer takes it: None, a tensor, or a tuple (LSTM)."""
    given = [inputs.get(n) for n in names]
    if given[0] is None:
        return None
    return given[0] if len(given) == 1 else tuple(given)


def call_layer(layer, x: Tensor, hx, lengths: Tensor | None):
    """An eager RNN layer call with lengths: rnnkit's ``lengths=``, or packing for torch.nn's."""
    if lengths is None:
        return layer(x, hx)
    if not type(layer).__module__.startswith("torch."):
        return layer(x, hx, lengths=lengths)
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    bf = layer.batch_first
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=bf, enforce_sorted=False)
    out, h_n = layer(packed, hx)
    out, _ = pad_packed_sequence(out, batch_first=bf, total_length=x.shape[1 if bf else 0])
    return out, h_n


# --------------------------------------------------------------------------------------------------
# RNN, LSTM, GRU, their Fused* and LayerNorm* variants


def stack_of(layer) -> Stack:
    """The `Stack` of an ``rnnkit.nn.RNNBase`` layer (plain, Fused* or LayerNorm*)."""
    kind = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}[layer.mode]
    if hasattr(layer, "ln_ih_weight_l0"):
        kind = "ln_" + kind
    zoneout = getattr(layer, "zoneout", (0.0, 0.0))
    return Stack(kind, layer.num_layers, layer.hidden_size, layer.bidirectional, layer.proj_size,
                 tuple(1.0 - p for p in zoneout))


class StackProgram(Program):
    """``layer(input, hx, lengths=)`` of a stacked layer; inputs (input, h0[, c0], lengths)."""

    def __init__(self, layer, target: str = "pt2", streaming: bool = False) -> None:
        super().__init__(layer, target, streaming)
        self.layer = layer
        self.stack = stack_of(layer)
        self.batch_first = layer.batch_first and not streaming
        self.native = self.onnx and onnx_ops.uses_native_op(self.stack)
        if self.native:  # ONNX's layout, stored once: initializers of the graph
            p = _params(layer)
            for k in range(self.stack.num_layers):
                for name, w in zip("WRB", onnx_ops.onnx_weights(self.stack, p, k)):
                    self.register_buffer(f"onnx_{name}_l{k}", w)
        self.slots = self._slots()
        names = ["h_n", "c_n"][: self.stack.n_state]
        self.outputs = ["y_t" if streaming else "output", *names]
        self.time_axis = None if streaming else (1 if self.batch_first else 0)

    def _slots(self) -> list[Slot]:
        s, layer = self.stack, self.layer
        rows, I = s.num_layers * s.directions, layer.input_size
        like = layer.weight_ih_l0
        if self.streaming:
            x = Slot("x_t", "data", {0: "B"}, lambda T, B: like.new_zeros(B, I).normal_())
        else:
            axes = {1: "T", 0: "B"} if self.batch_first else {0: "T", 1: "B"}
            shape = (lambda T, B: (B, T, I)) if self.batch_first else (lambda T, B: (T, B, I))
            x = Slot("input", "data", axes, lambda T, B: like.new_zeros(shape(T, B)).normal_())
        slots = [x]
        for k, size in enumerate([s.out_size, s.hidden_size][: s.n_state]):
            slots.append(Slot(("h0", "c0")[k], "state", {1: "B"},
                              lambda T, B, n=size: like.new_zeros(rows, B, n),
                              default=lambda k=k: self.initial_state(1)[k].detach()))
        if not self.streaming:
            slots.append(Slot("lengths", "lengths", {0: "B"},
                              lambda T, B: torch.full((B,), T, dtype=torch.long)))
        return slots

    def eager(self, inputs):
        hx = _states(inputs, ("h0", "c0")[: self.stack.n_state])
        if self.streaming:
            out = self.layer.step(inputs["x_t"], hx)
        else:
            out = call_layer(self.layer, inputs["input"], hx, inputs.get("lengths"))
        return flatten(out)

    def initial_state(self, batch) -> tuple[Tensor, ...]:
        """The state used when none is given (eval mode): zeros, or the learned h0, c0."""
        s, layer = self.stack, self.layer
        like = layer.weight_ih_l0
        if getattr(layer, "init_state", "zeros") == "learned":
            learned = (layer.h0, layer.c0) if s.n_state == 2 else (layer.h0,)
            return tuple(p.unsqueeze(1).expand(-1, batch, -1) for p in learned)
        rows = s.num_layers * s.directions
        return tuple(like.new_zeros(rows, batch, n) for n in [s.out_size, s.hidden_size][: s.n_state])

    def run(self, x: Tensor, *rest):
        states, lengths = rest[: self.stack.n_state], rest[self.stack.n_state:]
        lengths = lengths[0] if lengths else None
        if self.batch_first:
            x = x.transpose(0, 1)  # (T, B, I)
        batch = x.shape[0] if self.streaming else x.shape[1]
        hx = self.initial_state(batch) if states[0] is None else tuple(states)
        if self.streaming:
            y, h_n = self._step(x, hx)
        else:
            y, h_n = self._sequence(x, hx, lengths)
            if self.batch_first:
                y = y.transpose(0, 1)
        return (y, *h_n)

    def _sequence(self, x, hx, lengths):
        if not self.native:
            return run_stack(self.stack, _params(self.layer), x, hx, lengths)
        D, finals = self.stack.directions, [[] for _ in hx]
        for k in range(self.stack.num_layers):
            weights = tuple(getattr(self, f"onnx_{n}_l{k}") for n in "WRB")
            state = tuple(h[k * D:(k + 1) * D] for h in hx)  # (D, B, ·)
            x, state = onnx_ops.native_layer(self.stack, x, weights, lengths, state)
            for f, s in zip(finals, state):
                f.append(s)
        return x, tuple(torch.cat(f) for f in finals)

    def _step(self, x_t, hx):
        if not self.native:
            return step_stack(self.stack, _params(self.layer), x_t, hx)
        y, h_n = self._sequence(x_t.unsqueeze(0), hx, None)  # one step of ONNX's operator
        return y.squeeze(0), h_n


# --------------------------------------------------------------------------------------------------
# the cells: one step, no time axis


class CellProgram(Program):
    """``RNNCell`` / ``LSTMCell`` / ``GRUCell``: inputs (input, h[, c]) -> (h', [c'])."""

    time_axis = None

    def __init__(self, cell, target: str = "pt2", streaming: bool = False) -> None:
        super().__init__(cell, target, streaming)
        self.cell = cell
        name = type(cell).__name__
        self.kind = {"LSTMCell": "lstm", "GRUCell": "gru"}.get(
            name, "rnn_" + getattr(cell, "nonlinearity", "tanh"))
        n_state = 2 if self.kind == "lstm" else 1
        like, H = cell.weight_ih, cell.hidden_size
        self.slots = [Slot("input", "data", {0: "B"},
                           lambda T, B: like.new_zeros(B, cell.input_size).normal_())]
        for k in range(n_state):
            self.slots.append(Slot(("h", "c")[k], "state", {0: "B"},
                                   lambda T, B: like.new_zeros(B, H), batch_axis=0,
                                   default=lambda: like.new_zeros(1, H).detach()))
        self.outputs = ["h_n", "c_n"][:n_state]

    def eager(self, inputs):
        return flatten(self.cell(inputs["input"], _states(inputs, ("h", "c")[: len(self.outputs)])))

    def run(self, x: Tensor, *states):
        if states[0] is None:
            states = tuple(x.new_zeros(x.shape[0], self.cell.hidden_size) for _ in states)
        return tuple(cell_forward(self.kind, _params(self.cell), x, tuple(states)))


# --------------------------------------------------------------------------------------------------
# Elman, the general recurrence, minGRU / minLSTM: one hidden state (B, H)


class HiddenProgram(Program):
    """Layers with one state h (B, H) (``Elman``, ``Recurrent``) or (L, B, H) (``MinGRU``...).

    Inputs (input, h0[, lengths]) -> (output, h_n); streaming (x_t, h) -> (y_t, h_n).
    """

    def __init__(self, layer, target: str = "pt2", streaming: bool = False) -> None:
        super().__init__(layer, target, streaming)
        self.layer = layer
        self.family = type(layer).__name__
        self.batch_first = layer.batch_first and not streaming
        self.time_axis = None if streaming else (1 if self.batch_first else 0)
        self.layers = getattr(layer, "num_layers", None)  # minGRU / minLSTM: (L, B, H) states
        self.native = self.onnx and self.family == "Elman"
        if self.native:
            self.stack = Stack("rnn_" + layer.nonlinearity, 1, layer.hidden_size)
            p = {k + "_l0": v for k, v in _params(layer).items()}
            for name, w in zip("WRB", onnx_ops.onnx_weights(self.stack, p, 0)):
                self.register_buffer(f"onnx_{name}", w)
        self.slots = self._slots()
        self.outputs = ["y_t" if streaming else "output", "h_n"]

    def _input_size(self) -> int | None:
        if self.family == "Recurrent":  # an affine v (nn.Linear) tells its input size
            return getattr(self.layer.v, "in_features", None)
        return self.layer.input_size

    def _slots(self) -> list[Slot]:
        layer, H, I = self.layer, self.layer.hidden_size, self._input_size()
        like = next(layer.parameters())

        def make(*shape):
            if I is None:
                raise ValueError(f"{self.model_name}: v is not an nn.Linear, so the input size is "
                                 "unknown; give an example input")
            return like.new_zeros(*shape, I).normal_()

        if self.streaming:
            slots = [Slot("x_t", "data", {0: "B"}, lambda T, B: make(B), rank=2)]
        else:
            axes = {1: "T", 0: "B"} if self.batch_first else {0: "T", 1: "B"}
            order = (lambda T, B: (B, T)) if self.batch_first else (lambda T, B: (T, B))
            slots = [Slot("input", "data", axes, lambda T, B: make(*order(T, B)), rank=3)]
        lead = () if self.layers is None else (self.layers,)
        slots.append(Slot("h0", "state", {len(lead): "B"},
                          lambda T, B: like.new_zeros(*lead, B, H), batch_axis=len(lead),
                          default=lambda: self.initial_state(1).detach()))
        if not self.streaming and self.layers is None:  # minGRU / minLSTM take no lengths
            slots.append(Slot("lengths", "lengths", {0: "B"},
                              lambda T, B: torch.full((B,), T, dtype=torch.long)))
        return slots

    def eager(self, inputs):
        h0 = inputs.get("h0")
        if self.streaming:
            return flatten(self.layer.step(inputs["x_t"], h0) if self.layers is None else
                           self._min_step(inputs["x_t"], h0))
        if self.layers is not None:
            return flatten(self.layer(inputs["input"], h0))
        return flatten(self.layer(inputs["input"], h0, lengths=inputs.get("lengths")))

    def _min_step(self, x_t, h0):
        """minGRU / minLSTM have no step(): a call on a sequence of one step is one step."""
        y, h_n = self.layer(x_t.unsqueeze(1 if self.layer.batch_first else 0), h0)
        return y.squeeze(1 if self.layer.batch_first else 0), h_n

    def initial_state(self, batch) -> Tensor:
        layer, H = self.layer, self.layer.hidden_size
        like = next(layer.parameters())
        if self.layers is not None:
            return like.new_zeros(self.layers, batch, H)
        if layer.init_state == "learned":
            return layer.h0.unsqueeze(0).expand(batch, H)
        return like.new_zeros(batch, H)

    def run(self, x: Tensor, h0: Tensor | None = None, lengths: Tensor | None = None):
        if self.batch_first:
            x = x.transpose(0, 1)  # (T, B, I)
        batch = x.shape[0] if self.streaming else x.shape[1]
        h = self.initial_state(batch) if h0 is None else h0
        if self.streaming:
            x = x.unsqueeze(0)  # (1, B, I): one step through the same code
        y, h_n = self._run(x, h, lengths)
        if self.streaming:
            y = y.squeeze(0)
        elif self.batch_first:
            y = y.transpose(0, 1)
        return y, h_n

    def _run(self, x, h, lengths):
        layer, p = self.layer, _params(self.layer)
        if self.layers is not None:
            if self.streaming:
                return tuple(t.unsqueeze(0) if i == 0 else t for i, t in
                             enumerate(min_step(layer.coefficients, p, self.layers, x[0], h)))
            return min_forward(layer.coefficients, p, self.layers, x, h)
        if self.family == "Recurrent":
            return recurrent_forward(layer.v, layer.q, layer.u, layer.activation, x, h, lengths)
        kind = "rnn_" + layer.nonlinearity
        if not self.native:
            return elman_forward(kind, p, x, h, lengths)
        weights = (self.onnx_W, self.onnx_R, self.onnx_B if layer.bias else None)
        hs, (h_n,) = onnx_ops.native_layer(self.stack, x, weights, lengths, (h.unsqueeze(0),))
        y = torch.nn.functional.linear(hs, p["weight_ho"], p.get("bias_ho"))  # (T, B, O)
        if lengths is not None:
            valid = torch.arange(x.shape[0])[:, None, None] < lengths[None, :, None]
            y = y.masked_fill(~valid, 0.0)
        return y, h_n[0]
