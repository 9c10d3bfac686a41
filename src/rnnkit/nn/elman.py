"""The whole Elman network (Elman 1990): a recurrent layer and an affine output map.

    h_t = σ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)        (B, H)
    y_t = W_ho h_t + b_ho                                  (B, O)

Parameters keep these names, so the equations read straight off ``state_dict()``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn._checks import (
    BACKENDS,
    INIT_STATES,
    check_bool,
    check_choice,
    check_features,
    check_lengths,
    check_nonlinearity,
    check_positive_int,
)
from rnnkit.nn.cells import combined_bias, rnn_step
from rnnkit.nn.interop import TorchInterop, allow_weights_only_load
from rnnkit.nn.loop import column_major, length_mask
from rnnkit.nn.native import run_native_any
from rnnkit.nn.paths import NATIVE, choose_path, time_loop
from rnnkit.nn.sequence import check_h0, from_time_major, initial_state, step_once, to_time_major


class Elman(TorchInterop, nn.Module):
    """Elman network. x (T, B, I) / (B, T, I) with batch_first / (T, I) -> (y, h_n).

    y (T, B, O) (batch_first: (B, T, O); unbatched: (T, O)); h_n (B, H) (unbatched: (H,)).
    ``forward(x, h0)`` over a whole sequence equals ``step`` (or ``forward`` on chunks) carrying h_n.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        init_state: str = "zeros",
        backend: str = "auto",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("output_size", output_size)):
            check_positive_int(name, value)
        check_nonlinearity(nonlinearity)
        check_bool("bias", bias)
        check_bool("batch_first", batch_first)
        check_choice("init_state", init_state, INIT_STATES)
        check_choice("backend", backend, BACKENDS)
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size
        self.nonlinearity, self.bias, self.batch_first = nonlinearity, bias, batch_first
        self.init_state, self.backend = init_state, backend
        kw = {"device": device, "dtype": dtype}
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(H, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(H, H, **kw))
        self.bias_ih = nn.Parameter(torch.empty(H, **kw)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(H, **kw)) if bias else None
        self.weight_ho = nn.Parameter(torch.empty(output_size, H, **kw))
        self.bias_ho = nn.Parameter(torch.empty(output_size, **kw)) if bias else None
        if init_state == "learned":
            self.h0 = nn.Parameter(torch.zeros(H, **kw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # U(-1/√H, 1/√H) everywhere: torch.nn.RNN's scheme, and nn.Linear's bound for fan-in H
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, p in self.named_parameters():
            if name == "h0":
                nn.init.zeros_(p)
            else:
                nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, {self.output_size}"
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        for name, default in (("bias", True), ("batch_first", False), ("init_state", "zeros"),
                              ("backend", "auto")):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s

    def initial_state(self, batch_size: int | None = None) -> Tensor:
        """h0 of shape (batch_size, H), or (H,) when batch_size is None."""
        shape = (self.hidden_size,) if batch_size is None else (batch_size, self.hidden_size)
        return initial_state(
            self.init_state, self.training, shape, self.weight_hh, getattr(self, "h0", None)
        )

    def forward(
        self, x: Tensor, h0: Tensor | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        name = type(self).__name__
        x, batched = to_time_major(name, x, self.batch_first)  # (T, B, I)
        check_features(name, x, self.input_size, self.weight_ih)
        T, B = x.shape[:2]
        h = self.initial_state(B) if h0 is None else check_h0(name, h0, B, self.hidden_size, batched, x)
        if lengths is not None:
            lengths = check_lengths(lengths, B, T, x.device)
        hs, h_n = self._recurrence(x, h, lengths)  # (T, B, H), (B, H)
        y = F.linear(hs, self.weight_ho, self.bias_ho)  # (T, B, O)
        if lengths is not None:
            y = y.masked_fill(~length_mask(lengths, T), 0.0)
        return from_time_major(y, h_n, batched, self.batch_first)

    def step(self, x_t: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One time step: x_t (B, I) or (I,) -> (y_t, h_t). Carry h_t into the next call."""
        return step_once(self, x_t, h)

    def _recurrence(self, x: Tensor, h: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        """x (T, B, I), h (B, H) -> all states (T, B, H) and the final one (B, H)."""
        path = choose_path(self.backend, x, native=True)
        if path == NATIVE:
            weights = [self.weight_ih, self.weight_hh]
            if self.bias:
                weights += [self.bias_ih, self.bias_hh]
            mode = "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"
            hs, (h_n,) = run_native_any(
                mode, x, (h.unsqueeze(0),), weights, lengths, batch_first=False, bias=self.bias,
                num_layers=1, dropout=0.0, training=False, bidirectional=False,
            )
            return hs, h_n[0]
        gi = F.linear(x, self.weight_ih, combined_bias(self.bias_ih, self.bias_hh))  # (T, B, H)
        w_hh, nl = column_major(self.weight_hh), self.nonlinearity
        hs, (h_n,) = time_loop(path)(lambda g, s: (rnn_step(g, s[0], w_hh, nl),), gi, (h,), lengths)
        return hs, h_n


allow_weights_only_load(Elman)  # sound: see rnnkit.nn.interop
