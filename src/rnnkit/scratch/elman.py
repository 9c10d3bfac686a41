"""The whole Elman network (Elman 1990): a recurrent layer and an affine output map.

    h_t = f(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)        (B, H)      f = tanh or relu
    y_t = h_t W_ho^T + b_ho                                   (B, O)

x is (T, B, I) floats, or (T, B) integer indices standing for one-hot vectors of size I (the
lookup picks a column of W_ih; the gradient lands on that column only). Parameters and state as
in ``rnnkit.nn.Elman``: ``weight_ih`` (H, I), ``weight_hh`` (H, H), ``bias_ih``, ``bias_hh`` (H,),
``weight_ho`` (O, H), ``bias_ho`` (O,); h (B, H).
"""

from __future__ import annotations

import numpy as np

from rnnkit.scratch.linear import init_linear, linear_backward, linear_forward
from rnnkit.scratch.module import Module, check_size, to_numpy
from rnnkit.scratch.recurrent_layers import RNN

_RNN_NAMES = {"weight_ih": "weight_ih_l0", "weight_hh": "weight_hh_l0",
              "bias_ih": "bias_ih_l0", "bias_hh": "bias_hh_l0"}


class Elman(Module):
    """Elman network: ``forward(x, h0=None) -> (y (T, B, O), h_n (B, H), cache)``;
    ``backward(d_y, cache, d_h_n=None) -> (d_x or None, d_h0 (B, H), grads)``; d_y may be None."""

    def __init__(
        self, input_size, hidden_size, output_size, *, nonlinearity="tanh", bias=True,
        dtype=np.float64, seed=None,
    ):
        super().__init__(dtype)
        rng = np.random.default_rng(seed)
        self.output_size = check_size("output_size", output_size)
        # the recurrence is a one-layer scratch RNN; its arrays are shared under Elman's names
        self.rnn = RNN(input_size, hidden_size, nonlinearity=nonlinearity, bias=bias, dtype=dtype,
                       seed=rng.integers(2**63))
        self.input_size, self.hidden_size = self.rnn.input_size, self.rnn.hidden_size
        self.nonlinearity, self.bias = nonlinearity, bool(bias)
        inner = self.rnn.parameters()
        self._params = {name: inner[lname] for name, lname in _RNN_NAMES.items() if lname in inner}
        w, b = init_linear(rng, hidden_size, self.output_size, bias, self.dtype)
        self._params["weight_ho"] = w
        if bias:
            self._params["bias_ho"] = b

    def initial_state(self, batch_size):
        return np.zeros((batch_size, self.hidden_size), self.dtype)

    def forward(self, x, h0=None):
        if h0 is not None:
            h0 = np.asarray(to_numpy(h0), dtype=self.dtype)
            batch = to_numpy(x).shape[1] if np.ndim(x) >= 2 else None
            if h0.shape != (batch, self.hidden_size):
                raise ValueError(f"Expected h0 of size {(batch, self.hidden_size)}, got {h0.shape}")
            h0 = h0[None]  # (1, B, H): the layer's state shape
        hs, h_n, rnn_cache = self.rnn.forward(x, h0)  # (T, B, H), (1, B, H)
        y = linear_forward(hs, self._params["weight_ho"], self._params.get("bias_ho"))  # (T, B, O)
        return y, h_n[0], (hs, rnn_cache)

    __call__ = forward

    def backward(self, d_y, cache, d_h_n=None):
        hs, rnn_cache = cache
        O = self.output_size
        if d_y is None:  # gradient through the final state only
            d_hs, d_w = None, np.zeros_like(self._params["weight_ho"])
            d_b = np.zeros(O, self.dtype) if self.bias else None
        else:
            d_y = np.asarray(to_numpy(d_y), dtype=self.dtype)
            expected = (*hs.shape[:2], O)
            if d_y.shape != expected:
                raise ValueError(f"d_y must have the output's shape. Expected {expected}, got {d_y.shape}")
            d_hs, d_w, d_b = linear_backward(d_y, hs, self._params["weight_ho"], self.bias)
        d_h_n = None if d_h_n is None else np.asarray(to_numpy(d_h_n), dtype=self.dtype)[None]
        d_x, d_h0, inner = self.rnn.backward(d_hs, rnn_cache, d_h_n)
        grads = {name: inner[lname] for name, lname in _RNN_NAMES.items() if lname in inner}
        grads["weight_ho"] = d_w
        if d_b is not None:
            grads["bias_ho"] = d_b
        return d_x, d_h0[0], grads
