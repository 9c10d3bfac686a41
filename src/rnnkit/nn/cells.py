"""One time step of each recurrent cell, as functions and as ``torch.nn``-compatible modules.

The step functions are the single source of the update equations: the cell modules below call them
once, and the sequence layers (``rnnkit.nn.rnn``) call them once per time step from the loop in
``rnnkit.nn.loop`` (through `layer_step`). Each takes ``gi``, the input projection ``W_ih x_t + b_ih`` already computed for
this step (the loop computes it for all time steps in one matrix product), so a step only does the
work that depends on the previous state.

Gate order and layouts follow ``torch.nn`` exactly: LSTM (i, f, g, o), GRU (r, z, n).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn._checks import check_dtype, check_input, check_like, check_nonlinearity
from rnnkit.nn.interop import TorchInterop, allow_weights_only_load
from rnnkit.nn.loop import Step, column_major

# --------------------------------------------------------------------------------------------------
# step functions: (gi, state, weights) -> new state
# --------------------------------------------------------------------------------------------------


def rnn_step(gi: Tensor, h: Tensor, w_hh: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """Elman step ``h' = σ(gi + W_hh h)`` where ``gi = W_ih x + b_ih + b_hh``.

    gi (B, H), h (B, H), w_hh (H, H) -> h' (B, H).
    """
    pre = torch.addmm(gi, h, w_hh.t())  # (B, H)
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


def lstm_step(
    gi: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, w_hr: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """LSTM step (Hochreiter & Schmidhuber 1997, with forget gate; torch.nn's form).

    gates = gi + W_hh h,  gi = W_ih x + b_ih + b_hh                       (B, 4H)
    i, f, o = σ(gates_i), σ(gates_f), σ(gates_o);  g = tanh(gates_g)
    c' = f ⊙ c + i ⊙ g;   h' = o ⊙ tanh(c');   h' = W_hr h' when projecting (B, P)
    """
    gates = torch.addmm(gi, h, w_hh.t())  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)  # 4 x (B, H)
    c_new = torch.addcmul(torch.sigmoid(f) * c, torch.sigmoid(i), torch.tanh(g))
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    if w_hr is not None:
        h_new = h_new @ w_hr.t()  # (B, P)
    return h_new, c_new


def gru_step(
    gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None, h_in: Tensor | None = None
) -> Tensor:
    """GRU step (Cho et al. 2014; torch.nn's form, reset gate applied after the matrix product).

    gi = W_ih x + b_ih, gh = W_hh h_in + b_hh                              (B, 3H)
    r = σ(gi_r + gh_r);  z = σ(gi_z + gh_z);  n = tanh(gi_n + r ⊙ gh_n)
    h' = (1 - z) ⊙ n + z ⊙ h  =  n + z ⊙ (h - n)

    ``h_in`` is the h entering ``W_hh``: h itself unless a dropout mask applies to it (the carried
    h is never dropped).
    """
    return gru_gates(gi, F.linear(h if h_in is None else h_in, w_hh, b_hh), h)  # gh (B, 3H)


def gru_gates(gi: Tensor, gh: Tensor, h: Tensor) -> Tensor:
    """The GRU update from both projections: gi, gh (B, 3H), h (B, H) -> h' (B, H).

    Shared by every GRU variant (plain, layer-normalised), which differ only in how gh is computed.
    """
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(torch.addcmul(i_n, r, h_n))
    return torch.addcmul(n, z, h - n)


def combined_bias(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    """RNN and LSTM add both biases before the nonlinearity, so the loop folds them into ``gi``."""
    if b_ih is None:
        return None
    return b_ih + b_hh


# --------------------------------------------------------------------------------------------------
# a layer's step from its weights (torch.nn's layout: w_ih, w_hh, b_ih, b_hh, w_hr)
# --------------------------------------------------------------------------------------------------


def input_projection(mode: str, x: Tensor, w: dict) -> Tensor:
    """``W_ih x + b`` for all steps: x (T, B, I) -> (T, B, G). RNN and LSTM fold both biases in;
    the GRU adds ``b_hh`` inside the step (it sits inside ``r ⊙ (W_hh h + b_hh)``)."""
    if mode == "GRU":
        return F.linear(x, w["w_ih"], w["b_ih"])
    return F.linear(x, w["w_ih"], combined_bias(w["b_ih"], w["b_hh"]))


def layer_step(mode: str, w: dict, w_hh: Tensor, hidden_mask: Tensor | None = None) -> Step:
    """``step(gi_t, state) -> state`` of a ``mode`` layer (RNN_TANH, RNN_RELU, LSTM, GRU) for
    `rnnkit.nn.loop.scan`. ``w_hh`` may differ from ``w["w_hh"]`` (DropConnect);
    ``hidden_mask`` (B, H): variational dropout on the h entering ``W_hh``."""
    w_hh = column_major(w_hh)  # every step multiplies by its transpose
    mask = (lambda h: h) if hidden_mask is None else (lambda h: h * hidden_mask)
    if mode == "GRU":
        b_hh = w["b_hh"]
        return lambda g, s: (gru_step(g, s[0], w_hh, b_hh, h_in=mask(s[0])),)
    if mode == "LSTM":
        w_hr = None if w["w_hr"] is None else column_major(w["w_hr"])
        return lambda g, s: lstm_step(g, mask(s[0]), s[1], w_hh, w_hr)
    nl = "tanh" if mode == "RNN_TANH" else "relu"
    return lambda g, s: (rnn_step(g, mask(s[0]), w_hh, nl),)


# --------------------------------------------------------------------------------------------------
# cell modules: drop-in for torch.nn.RNNCell / LSTMCell / GRUCell
# --------------------------------------------------------------------------------------------------


class _CellBase(TorchInterop, nn.Module):
    """Parameters ``weight_ih (G*H, I)``, ``weight_hh (G*H, H)``, ``bias_ih``, ``bias_hh (G*H)``."""

    _name = "RNNCell"

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool, num_chunks: int, device=None, dtype=None
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            _check_size(name, value)
        # like torch.nn's cells: any truth value for bias, and sizes of 0 (an empty state)
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = nn.Parameter(torch.empty(num_chunks * hidden_size, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(num_chunks * hidden_size, hidden_size, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(num_chunks * hidden_size, **kw))
            self.bias_hh = nn.Parameter(torch.empty(num_chunks * hidden_size, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch.nn's scheme and order, so the same seed gives the same weights
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        """torch.nn's repr, exactly."""
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _prepare(self, input: Tensor, states: tuple[Tensor | None, ...]):
        """Check shapes and dtypes in torch.nn's order and words (then ours); add the batch axis
        to unbatched input. Returns batched tensors."""
        name = self._name
        check_input(name, input, {1: "(I,)", 2: "(B, I)"})
        labels = ["hidden"] if len(states) == 1 else [f"hx[{k}]" for k in range(len(states))]
        for s, label in zip(states, labels):
            if isinstance(s, Tensor) and s.dim() not in (1, 2):
                raise ValueError(f"{name}: Expected {label} to be 1D or 2D, got {s.dim()}D instead")
        for s, label in zip(states, labels):  # torch.nn would misread the batch axis: ours
            if isinstance(s, Tensor) and s.dim() != input.dim():
                raise ValueError(f"{name}: Expected {label.replace('hidden', 'hx')} to be "
                                 f"{input.dim()}D like the input, got {s.dim()}D instead")
        if input.size(-1) != self.input_size:
            raise RuntimeError(
                f"{name}: input has inconsistent input_size: got {input.size(-1)} expected "
                f"{self.input_size} (input.size(-1) must be equal to input_size)"
            )
        check_dtype(name, input, self.weight_ih)
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        out = []
        for k, s in enumerate(states):
            if s is None:
                s = x.new_zeros(x.size(0), self.hidden_size)
            else:
                s = _check_cell_state(name, s if batched else s.unsqueeze(0), k, x,
                                      self.hidden_size, labels[k].replace("hidden", "hx"))
            out.append(s)
        return x, out, batched


def _check_size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be zero or greater, got {value}")
    return value


def _check_cell_state(name: str, s, k: int, x: Tensor, hidden_size: int, label: str) -> Tensor:
    """One state (B, H) of a cell against the input x (B, I): torch.nn's words, then ours."""
    if not isinstance(s, Tensor):
        raise TypeError(f"{name}: {label} must be a Tensor, got {type(s).__name__}")
    if s.size(0) != x.size(0):
        raise RuntimeError(f"{name}: Input batch size {x.size(0)} doesn't match hidden{k} batch "
                           f"size {s.size(0)} ({label} is (B, hidden_size) like the input's (B, I))")
    if s.size(1) != hidden_size:
        raise RuntimeError(f"{name}: hidden{k} has inconsistent hidden_size: got {s.size(1)}, "
                           f"expected {hidden_size} ({label}: (B, hidden_size))")
    check_like(name, s, x, label)
    return s


class RNNCell(_CellBase):
    """Elman cell ``h' = σ(W_ih x + b_ih + W_hh h + b_hh)``, σ = tanh or relu.

    input (B, I) or (I,); hx (B, H) or (H,), zeros when omitted -> h' of the same batching.
    """

    _name = "RNNCell"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device=None,
        dtype=None,
    ) -> None:
        check_nonlinearity(nonlinearity)
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, (hx,))
        gi = F.linear(x, self.weight_ih, combined_bias(self.bias_ih, self.bias_hh))
        h = rnn_step(gi, h, self.weight_hh, self.nonlinearity)
        return h if batched else h.squeeze(0)


class LSTMCell(_CellBase):
    """LSTM cell; see `lstm_step`. input (B, I) or (I,); hx = (h, c) -> (h', c')."""

    _name = "LSTMCell"

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        if isinstance(hx, Tensor):
            raise TypeError(
                "LSTMCell: hx must be a tuple (h, c) of two tensors of shape (batch, hidden_size); "
                f"got a single Tensor of shape {list(hx.shape)}"
            )
        if hx is not None and len(hx) != 2:
            raise RuntimeError(
                f"LSTMCell: lstm_cell expects two hidden states: hx must be a tuple (h, c), got "
                f"{len(hx)} elements"
            )
        x, (h, c), batched = self._prepare(input, (None, None) if hx is None else tuple(hx))
        gi = F.linear(x, self.weight_ih, combined_bias(self.bias_ih, self.bias_hh))
        h, c = lstm_step(gi, h, c, self.weight_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(_CellBase):
    """GRU cell; see `gru_step`. input (B, I) or (I,); hx (B, H) or (H,) -> h'."""

    _name = "GRUCell"

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, (hx,))
        gi = F.linear(x, self.weight_ih, self.bias_ih)
        h = gru_step(gi, h, self.weight_hh, self.bias_hh)
        return h if batched else h.squeeze(0)


allow_weights_only_load(RNNCell, LSTMCell, GRUCell)  # sound: see rnnkit.nn.interop
