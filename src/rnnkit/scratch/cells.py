"""Single-step cells with parameters: RNNCell, LSTMCell, GRUCell, state-dict compatible with torch.nn.

Each wraps the step functions of its cell file (``rnn_step``, ``lstm_step``, ``gru_step`` and their
backward) around parameters named as in torch.nn.*Cell (``weight_ih``, ``weight_hh``, ``bias_ih``,
``bias_hh``; ``weight_hr`` for a projected LSTM cell):

    state_new, cache = cell.forward(x, state)          x (B, I); state h (B, H) or (h, c)
    d_x, d_state, grads = cell.backward(d_state_new, cache)
"""

from __future__ import annotations

import numpy as np

from rnnkit.scratch.gru_cell import gru_step, gru_step_backward
from rnnkit.scratch.lstm_cell import lstm_step, lstm_step_backward
from rnnkit.scratch.module import Module, check_size, to_numpy
from rnnkit.scratch.rnn_cell import _check_nonlinearity, rnn_step, rnn_step_backward


class _Cell(Module):
    gates = 1

    def __init__(self, input_size, hidden_size, bias=True, proj_size=0, dtype=np.float64, seed=None):
        super().__init__(dtype)
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = H = check_size("hidden_size", hidden_size)
        self.proj_size = check_size("proj_size", proj_size, minimum=0)
        if self.proj_size >= H:
            raise ValueError(f"proj_size must be smaller than hidden_size. Expected < {H}, got {proj_size}")
        self.bias = bool(bias)
        G, H_out = self.gates, self.proj_size or H
        shapes = {"weight_ih": (G * H, self.input_size), "weight_hh": (G * H, H_out)}
        if self.bias:
            shapes.update(bias_ih=(G * H,), bias_hh=(G * H,))
        if self.proj_size:
            shapes["weight_hr"] = (self.proj_size, H)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(H)
        for name, shape in shapes.items():
            self._params[name] = rng.uniform(-bound, bound, shape).astype(self.dtype)

    def _input(self, x):
        x = np.asarray(to_numpy(x), dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"input must be (B, {self.input_size}). Expected that shape, got {x.shape}")
        return x

    def _state(self, h, B, size, name="hx"):
        if h is None:
            return np.zeros((B, size), self.dtype)
        h = np.asarray(to_numpy(h), dtype=self.dtype)
        if h.shape != (B, size):
            raise ValueError(f"Expected {name} size {(B, size)}, got {h.shape}")
        return h


class RNNCell(_Cell):
    """Elman cell h' = f(x W_ih^T + b_ih + h W_hh^T + b_hh), as torch.nn.RNNCell."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=np.float64, seed=None):
        _check_nonlinearity(nonlinearity)
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, dtype=dtype, seed=seed)

    def forward(self, x, hx=None):
        x = self._input(x)
        return rnn_step(x, self._state(hx, len(x), self.hidden_size), self._params, self.nonlinearity)

    def backward(self, d_h, cache):
        return rnn_step_backward(d_h, cache)


class GRUCell(_Cell):
    """GRU cell (r, z, n), as torch.nn.GRUCell."""

    gates = 3

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float64, seed=None):
        super().__init__(input_size, hidden_size, bias, dtype=dtype, seed=seed)

    def forward(self, x, hx=None):
        x = self._input(x)
        return gru_step(x, self._state(hx, len(x), self.hidden_size), self._params)

    def backward(self, d_h, cache):
        return gru_step_backward(d_h, cache)


class LSTMCell(_Cell):
    """LSTM cell (i, f, g, o), as torch.nn.LSTMCell, plus the optional projection of torch.nn.LSTM."""

    gates = 4

    def __init__(self, input_size, hidden_size, bias=True, proj_size=0, dtype=np.float64, seed=None):
        super().__init__(input_size, hidden_size, bias, proj_size, dtype=dtype, seed=seed)

    def forward(self, x, hx=None):
        x = self._input(x)
        h, c = (None, None) if hx is None else hx
        state = (
            self._state(h, len(x), self.proj_size or self.hidden_size, "hx[0]"),
            self._state(c, len(x), self.hidden_size, "hx[1]"),
        )
        return lstm_step(x, state, self._params)

    def backward(self, d_state, cache):
        return lstm_step_backward(d_state, cache)
