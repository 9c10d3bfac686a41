"""``RNN``, ``LSTM``, ``GRU``: drop-in replacements for ``torch.nn``'s, with two execution paths.

Same constructor arguments, inputs (unbatched ``(T, I)``, ``(T, B, I)``, ``(B, T, I)`` with
``batch_first``, ``PackedSequence``), outputs, parameter names, shapes, gate order and
initialisation as ``torch.nn``, so state dicts move between the two unchanged. Extras (keyword-only
in the constructor):

* ``forward(input, hx=None, lengths=None)``: per-sequence lengths instead of packing. Outputs past
  a sequence's length are zero and ``h_n`` holds its state at its last valid step.
* ``init_state="zeros" | "random" | "learned"``: the state used when ``hx`` is not given. Learned
  states are parameters ``h0`` (and ``c0`` for LSTM), shaped ``(num_layers * D, H)``; random draws
  fresh standard-normal noise on every call in training mode and uses zeros in eval mode.
* ``backend="auto" | "native" | "loop"``: ``native`` calls PyTorch's own RNN kernels (what
  ``torch.nn`` runs), ``loop`` runs the readable Python time loop of ``rnnkit.nn.loop`` over the step
  functions of ``rnnkit.nn.cells``. ``auto`` picks native whenever the layer can use it. The choice
  is made in one place, `rnnkit.nn.paths.choose_path`; subclasses (``rnnkit.nn.fused``) add
  the fast path.
* ``step(x_t, hx=None)``: one time step without a time axis, for streaming and sampling.

Shapes: T time, B batch, I input, H hidden, P = proj_size (LSTM), H_out = P or H, D directions,
L layers. output (T, B, D*H_out); h_n (L*D, B, H_out); c_n (L*D, B, H).
"""

from __future__ import annotations

import math
import warnings
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from rnnkit.nn._checks import (
    BACKENDS,
    INIT_STATES,
    check_bool,
    check_choice,
    check_dropout,
    check_features,
    check_input,
    check_layer_state,
    check_lengths,
    check_nonlinearity,
    check_positive_int,
    check_proj_size,
)
from rnnkit.nn.cells import input_projection, layer_step
from rnnkit.nn.fast.driver import recurrence
from rnnkit.nn.interop import TorchInterop, allow_weights_only_load
from rnnkit.nn.loop import State, packed_to_padded, padded_to_packed, run_layers
from rnnkit.nn.native import run_native_any
from rnnkit.nn.paths import COMPILED, FAST, LOOP, NATIVE, choose_path, time_loop
from rnnkit.nn.sequence import FAST_CELLS, initial_state, step_once

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


class RNNBase(TorchInterop, nn.Module):
    """Shared machinery of `RNN`, `LSTM` and `GRU` (see the module docstring).

    Subclasses with their own cell override `_run_direction`, set ``_has_native = False``
    and give their fast-path cell in `fast_cell`.
    """

    _has_native = True
    #: why backend="native" is refused when _has_native is False
    _native_reason = ""
    #: the cell this layer runs on the fast path (a name in rnnkit.nn.fast.registry.KERNELS), or
    #: None: the stock layers run torch's kernels or the readable loop
    fast_cell: str | None = None

    def __init__(
        self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
        bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
        bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None, *,
        init_state: str = "zeros", backend: str = "auto",
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            check_positive_int(name, value)
        for name, value in (("bias", bias), ("batch_first", batch_first)):
            check_bool(name, value)  # torch.nn checks these two (bidirectional: any truth value)
        dropout = check_dropout(dropout)
        check_proj_size(proj_size, mode, hidden_size)
        check_choice("init_state", init_state, INIT_STATES)
        check_choice("backend", backend, BACKENDS)
        if backend == "native" and not self._has_native:
            raise ValueError(
                f"{type(self).__name__}: backend='native' is not available: {self._native_reason}. "
                "Use backend='auto' or 'loop'."
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=3,
            )

        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional, self.proj_size = bidirectional, proj_size
        self.init_state, self.backend = init_state, backend

        kw = {"device": device, "dtype": dtype}
        gate_size = _GATES[mode] * hidden_size
        out_size = proj_size or hidden_size  # H_out
        D = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else out_size * D
            for direction in range(D):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = {"weight_ih": (gate_size, layer_input), "weight_hh": (gate_size, out_size)}
                if bias:
                    shapes |= {"bias_ih": (gate_size,), "bias_hh": (gate_size,)}
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                names = []
                for base, shape in shapes.items():
                    setattr(self, base + sfx, nn.Parameter(torch.empty(shape, **kw)))
                    names.append(base + sfx)
                self._flat_weights_names += names
                self._all_weights.append(names)
        if init_state == "learned":
            self.h0 = nn.Parameter(torch.zeros(num_layers * D, out_size, **kw))
            if mode == "LSTM":
                self.c0 = nn.Parameter(torch.zeros(num_layers * D, hidden_size, **kw))
        self.reset_parameters()

    # ---------------------------------------------------------------------------------------------
    # parameters

    def reset_parameters(self) -> None:
        """torch.nn's scheme in its order (same seed, same weights): U(-1/√H, 1/√H); h0, c0 zero."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for w in self._flat_weights:
            nn.init.uniform_(w, -bound, bound)
        for name in ("h0", "c0"):
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name))

    @property
    def _flat_weights(self) -> list[Tensor]:
        # looked up on every call, so functional_call / parameter swaps are always honoured
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """Kept for drop-in compatibility; the CPU kernels need no flat weight buffer."""

    def _direction_weights(self, layer: int, reverse: bool) -> dict[str, Tensor | None]:
        sfx = f"_l{layer}" + ("_reverse" if reverse else "")
        get = partial(getattr, self)
        return {
            "w_ih": get("weight_ih" + sfx),
            "w_hh": get("weight_hh" + sfx),
            "b_ih": get("bias_ih" + sfx) if self.bias else None,
            "b_hh": get("bias_hh" + sfx) if self.bias else None,
            "w_hr": get("weight_hr" + sfx) if self.proj_size else None,
        }

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _state_sizes(self) -> list[int]:
        """Feature size of each state tensor: [H_out] or, for LSTM, [H_out, H]."""
        out = self.proj_size or self.hidden_size
        return [out, self.hidden_size] if self.mode == "LSTM" else [out]

    def extra_repr(self) -> str:
        """torch.nn's repr, exactly (it leaves out ``nonlinearity``), then rnnkit's own options."""
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for name, shown in (("bias", self.bias is not True),
                            ("batch_first", self.batch_first is not False),
                            ("dropout", self.dropout != 0), ("bidirectional", self.bidirectional is not False)):
            if shown:  # torch.nn's tests and order (bias, batch_first, dropout, bidirectional)
                s += f", {name}={getattr(self, name)}"
        for name, default in (("init_state", "zeros"), ("backend", "auto")):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s

    # ---------------------------------------------------------------------------------------------
    # forward

    def forward(self, input, hx=None, lengths=None):
        """See the module docstring. Returns ``(output, h_n)``; for LSTM ``(output, (h_n, c_n))``.

        ``lengths`` is meant to be passed by name; it may also come third in place, because
        torch's TorchScript-based ONNX exporter passes every argument with a default that way.
        """
        name = type(self).__name__
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError(
                    f"{name}: lengths cannot be combined with a PackedSequence, which carries its "
                    "own lengths"
                )
            check_input(name, input.data, {2: "(sum of lengths, I)"}, what="a Tensor")
            check_features(name, input.data, self.input_size, self.weight_ih_l0)
            batched, batch = True, int(input.batch_sizes[0])
            x = input.data
        else:
            layouts = {2: "(T, I)", 3: "(B, T, I)" if self.batch_first else "(T, B, I)"}
            check_input(name, input, layouts, what="a Tensor or PackedSequence")
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(0 if self.batch_first else 1)
            check_features(name, x, self.input_size, self.weight_ih_l0)
            batch = x.size(0 if self.batch_first else 1)
            if lengths is not None:
                seq_len = x.size(1 if self.batch_first else 0)
                lengths = check_lengths(lengths, batch, seq_len, x.device)
        hx = self._prepare_hx(hx, batch, batched, x)

        path = self._path(x)
        if path == NATIVE:  # PyTorch's own kernels (rnnkit.nn.native)
            output, h_n = run_native_any(
                self.mode, input if batched else x, hx, self._flat_weights, lengths,
                batch_first=self.batch_first, bias=self.bias, num_layers=self.num_layers,
                dropout=self.dropout, training=self.training, bidirectional=self.bidirectional,
            )
        else:
            output, h_n = self._forward_layers(input if batched else x, hx, lengths, path)

        if not batched:
            output = output.squeeze(0 if self.batch_first else 1)
            h_n = tuple(h.squeeze(1) for h in h_n)
        return output, (h_n if self.mode == "LSTM" else h_n[0])

    def step(self, x_t: Tensor, hx=None):
        """One time step: x_t (B, I) or (I,) -> (y_t (B, H_out) or (H_out,), new state).

        The state is what ``forward`` takes and returns as ``hx``; carry it from call to call.
        """
        if self.bidirectional:
            raise ValueError(
                f"{type(self).__name__}: step() runs forward in time; a bidirectional layer needs "
                "the whole sequence (call forward)"
            )
        return step_once(self, x_t, hx)

    def _path(self, x: Tensor) -> str:
        """native, fast, compiled or loop for this call (see `rnnkit.nn.paths.choose_path`)."""
        return choose_path(self.backend, x, native=self._has_native, fast_cell=self.fast_cell,
                           compiled=getattr(self, "compiled", None))

    # ---------------------------------------------------------------------------------------------
    # initial state

    def _prepare_hx(self, hx, batch: int, batched: bool, x: Tensor) -> State:
        """The initial state as a tuple of (L*D, B, ·) tensors in the caller's batch order."""
        if hx is None:
            return self._initial_state(batch, x)
        rows = self.num_layers * self.num_directions
        shapes = [(rows, batch, n) if batched else (rows, n) for n in self._state_sizes()]
        states = check_layer_state(type(self).__name__, hx, self.mode == "LSTM", shapes, x)
        return states if batched else tuple(s.unsqueeze(1) for s in states)

    def _initial_state(self, batch: int, x: Tensor) -> State:
        rows = self.num_layers * self.num_directions
        learned = (getattr(self, "h0", None), getattr(self, "c0", None))
        return tuple(
            initial_state(self.init_state, self.training, (rows, batch, size), x,
                          None if p is None else p.unsqueeze(1))  # (L*D, 1, ·)
            for size, p in zip(self._state_sizes(), learned)
        )

    # ---------------------------------------------------------------------------------------------
    # rnnkit's own paths: layer by layer, direction by direction (the readable loop; the fast
    # path in subclasses)

    def _forward_layers(self, input, hx: State, lengths: Tensor | None, path: str):
        if isinstance(input, PackedSequence):
            x, lens = packed_to_padded(input)  # (T, B, I) in the caller's order
            out, h_n = self._run_layers(x, hx, lens.to(x.device), path)
            return padded_to_packed(out, input), h_n
        x = input.transpose(0, 1) if self.batch_first else input  # (T, B, I)
        out, h_n = self._run_layers(x, hx, lengths, path)
        return (out.transpose(0, 1) if self.batch_first else out), h_n

    def _run_layers(
        self, x: Tensor, hx: State, lengths: Tensor | None, path: str = LOOP
    ) -> tuple[Tensor, State]:
        """All layers and directions. x (T, B, I), hx tuple of (L*D, B, ·) -> (out, h_n)."""
        dropout = self.dropout if self.training else 0.0
        return run_layers(partial(self._run_direction, lengths=lengths, path=path), x, hx,
                          self.num_layers, self.num_directions, dropout)

    def _run_direction(
        self, x: Tensor, state: State, layer: int, reverse: bool, lengths: Tensor | None,
        path: str = LOOP,
    ) -> tuple[Tensor, State]:
        """One layer, one direction. x (T, B, I), state tuple of (B, ·) -> (out (T, B, H_out), state)."""
        w = self._direction_weights(layer, reverse)
        gi = input_projection(self.mode, x, w)  # (T, B, G), all steps in one product
        if path in (FAST, COMPILED):  # step() streaming on the fast path (nn/sequence.py)
            params = (w["b_hh"],) if self.mode == "GRU" else ()
            return recurrence(FAST_CELLS[self.mode], gi, state, w["w_hh"], params,
                              reverse=reverse, lengths=lengths, compiled=path == COMPILED)
        return time_loop(path)(layer_step(self.mode, w, w["w_hh"]), gi, state, lengths, reverse)


class RNN(RNNBase):
    """Elman RNN, drop-in for ``torch.nn.RNN``: ``h_t = σ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        proj_size: int = 0,
        init_state: str = "zeros",
        backend: str = "auto",
    ) -> None:
        self.nonlinearity = check_nonlinearity(nonlinearity)
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(
            mode, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            proj_size, device, dtype, init_state=init_state, backend=backend,
        )


class LSTM(RNNBase):
    """LSTM, drop-in for ``torch.nn.LSTM`` (with ``proj_size``); the step is `lstm_step`."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        *,
        init_state: str = "zeros",
        backend: str = "auto",
    ) -> None:
        super().__init__(
            "LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            proj_size, device, dtype, init_state=init_state, backend=backend,
        )


class GRU(RNNBase):
    """GRU, drop-in for ``torch.nn.GRU``; the step is `gru_step`."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        proj_size: int = 0,
        init_state: str = "zeros",
        backend: str = "auto",
    ) -> None:
        super().__init__(
            "GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            proj_size, device, dtype, init_state=init_state, backend=backend,
        )


allow_weights_only_load(RNN, LSTM, GRU)  # sound: see rnnkit.nn.interop
