"""The recurrent layers of rnnkit.scratch: RNN, LSTM, GRU, run one textbook step at a time.

Each direction of each layer is the plain loop over time, calling the cell's step function (the
equations, in ``rnn_cell.py``, ``lstm_cell.py``, ``gru_cell.py``) once per step, and backward is
the same loop run backwards, calling the step's backward:

    forward:   state_t, cache_t = step(x_t, state_{t-1})                       for t = 0 .. T-1
    backward:  d_state += d_h_t  (h_t feeds the layer above and step t+1)      for t = T-1 .. 0
               d_x_t, d_state, grads_t = step_backward(d_state, cache_t)
               grads = sum_t grads_t                (a shared weight: the sum over the steps)

So a breakpoint in ``lstm_step`` stops once per time step with that step's x, h, c and gates in
view (docs/bptt.md, "Stepping through it"). The speed-tuned layers that compute the same numbers
are in `rnnkit.scratch.fast` (tests/scratch/fast/test_scratch_fast_equivalence.py ties them).
The walk over layers and directions, the parameters (torch.nn's names, shapes and gate order) and
the states are in `rnnkit.scratch.rnn_base`.

Shapes: T time, B batch, I input, H hidden, P proj_size, H_out = P or H, L layers, D directions.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from rnnkit.scratch.gru_cell import gru_step, gru_step_backward
from rnnkit.scratch.lstm_cell import lstm_step, lstm_step_backward
from rnnkit.scratch.rnn_base import RNNBase, state_array
from rnnkit.scratch.rnn_cell import _check_nonlinearity, rnn_step, rnn_step_backward


def _hidden(state):
    """h of a state: LSTM's state is the pair (h, c), the other cells' state is h."""
    return state[0] if isinstance(state, tuple) else state


def _add_to_hidden(d_state, d_h):
    """d_state with d_h added to its h part (LSTM: (d_h_state + d_h, d_c))."""
    if isinstance(d_state, tuple):
        return (d_state[0] + d_h, d_state[1])
    return d_state + d_h


def _zeros_like(state):
    if isinstance(state, tuple):
        return tuple(np.zeros_like(s) for s in state)
    return np.zeros_like(state)


class _Unrolled(RNNBase):
    """The textbook loop over time, shared by RNN, LSTM and GRU; subclasses give the step.

    ``step(x_t, state, params) -> (state_t, cache)`` and ``step_backward(d_state_t, cache) ->
    (d_x_t, d_state_{t-1}, grads)`` are the cell file's functions themselves, called directly from
    the loop, so in a debugger one ``up`` from inside the step shows the loop and its ``t``.
    """

    step = step_backward = None  # set by each cell's class

    def _one_hot(self, idx_t):
        """Index input (B,) as one-hot rows (B, I): x_t W_ih^T then picks column idx of W_ih."""
        x_t = np.zeros((len(idx_t), self.input_size), self.dtype)
        x_t[np.arange(len(idx_t)), idx_t] = 1.0
        return x_t

    def _run_direction(self, x, state0, p, is_index):
        """The cell's step at t = 0 .. T-1: x (T, B, I_l) or (T, B) indices -> (hs (T, B, H_out),
        state_T, cache)."""
        state, caches, hs = state0, [], []
        for t in range(len(x)):
            x_t = self._one_hot(x[t]) if is_index else x[t]  # (B, I_l)
            state, cache = self.step(x_t, state, p)  # the equations of one step
            caches.append(cache)
            hs.append(_hidden(state))  # h_t (B, H_out)
        return np.stack(hs), state, (caches, is_index, _zeros_like(state0))

    def _run_direction_backward(self, d_hs, d_state_T, cache):
        """The step's backward at t = T-1 .. 0. Returns (d_x (T, B, I_l) or None, d_state0, grads)."""
        caches, is_index, zero_state = cache
        d_state = zero_state if d_state_T is None else d_state_T
        d_xs, grads = [None] * len(caches), {}
        for t in range(len(caches) - 1, -1, -1):
            if d_hs is not None:  # h_t is read by the layer above (d_hs[t]) and by step t+1
                d_state = _add_to_hidden(d_state, d_hs[t])
            d_xs[t], d_state, step_grads = self.step_backward(d_state, caches[t])
            for name, value in step_grads.items():  # every step uses the same weights: add up
                grads[name] = grads[name] + value if name in grads else value
        return (None if is_index else np.stack(d_xs)), d_state, grads


class RNN(_Unrolled):
    """Elman RNN layers: h_t = f(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), f = tanh or relu.

    Same arguments, parameters and shapes as torch.nn.RNN: x (T, B, I) -> output (T, B, D*H),
    h_n (L*D, B, H). Each step is `rnnkit.scratch.rnn_cell.rnn_step`.
    """

    gates = 1
    step_backward = staticmethod(rnn_step_backward)

    def __init__(
        self, input_size, hidden_size, num_layers=1, *, bidirectional=False, bias=True,
        nonlinearity="tanh", dtype=np.float64, seed=None,
    ):
        _check_nonlinearity(nonlinearity)
        self.nonlinearity = nonlinearity
        self.step = partial(rnn_step, nonlinearity=nonlinearity)  # (x_t, h, params) -> (h_t, cache)
        super().__init__(
            input_size, hidden_size, num_layers, bidirectional=bidirectional, bias=bias, dtype=dtype,
            seed=seed,
        )


class GRU(_Unrolled):
    """GRU layers: r, z = σ(.), n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn)), h' = (1-z) n + z h.

    Same arguments, parameters and shapes as torch.nn.GRU (gates r, z, n): x (T, B, I) -> output
    (T, B, D*H), h_n (L*D, B, H). Each step is `rnnkit.scratch.gru_cell.gru_step`.
    """

    gates = 3
    step, step_backward = staticmethod(gru_step), staticmethod(gru_step_backward)

    def __init__(
        self, input_size, hidden_size, num_layers=1, *, bidirectional=False, bias=True,
        dtype=np.float64, seed=None,
    ):
        super().__init__(
            input_size, hidden_size, num_layers, bidirectional=bidirectional, bias=bias, dtype=dtype,
            seed=seed,
        )


class LSTM(_Unrolled):
    """LSTM layers: c_t = f * c_{t-1} + i * g, h_t = (o * tanh(c_t)) W_hr^T (W_hr with proj_size).

    Same arguments, parameters and shapes as torch.nn.LSTM (gates i, f, g, o). The state is the
    pair (h, c): h (L*D, B, H_out), c (L*D, B, H); ``forward`` returns (output (T, B, D*H_out),
    (h_n, c_n), cache) and ``backward`` takes d_h_n = (d_h_n, d_c_n), either part may be None.
    Each step is `rnnkit.scratch.lstm_cell.lstm_step`.
    """

    gates = 4
    step, step_backward = staticmethod(lstm_step), staticmethod(lstm_step_backward)

    def __init__(
        self, input_size, hidden_size, num_layers=1, *, bidirectional=False, bias=True, proj_size=0,
        dtype=np.float64, seed=None,
    ):
        super().__init__(
            input_size, hidden_size, num_layers, bidirectional=bidirectional, bias=bias,
            proj_size=proj_size, dtype=dtype, seed=seed,
        )

    def initial_state(self, batch_size):
        n = self.num_layers * self.num_directions
        return (
            np.zeros((n, batch_size, self.output_size), self.dtype),
            np.zeros((n, batch_size, self.hidden_size), self.dtype),
        )

    def _check_state(self, hx, batch_size):
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise ValueError(f"LSTM state must be a pair (h, c). Expected a tuple of 2, got {type(hx).__name__}")
        n = self.num_layers * self.num_directions
        h, c = hx
        zero_h, zero_c = self.initial_state(batch_size)
        h = zero_h if h is None else state_array("hx[0]", h, (n, batch_size, self.output_size), self.dtype)
        c = zero_c if c is None else state_array("hx[1]", c, (n, batch_size, self.hidden_size), self.dtype)
        return h, c

    def _split_state(self, hx, k):
        return hx[0][k], hx[1][k]

    def _stack_states(self, states):
        return np.stack([s[0] for s in states]), np.stack([s[1] for s in states])
