"""The speed-tuned recurrent layers: RNN, LSTM, GRU that run the cell files' fast loops.

The same layers as `rnnkit.scratch.recurrent_layers` (same arguments, parameters, states and
results up to float rounding; they subclass them), with one direction of one layer run as:

    gx = x W_ih^T + b_ih                  one matmul over all T*B rows (a row lookup for indices)
    hs, state_T = recur(gx, state_0)      only the recurrence runs step by step (*_loop.py)
    dW_ih = d gx^T x,  d x = d gx W_ih    one matmul each over all T*B rows, after the loop

instead of one textbook step per time step. tests/scratch/fast/test_scratch_fast_equivalence.py
ties every output, state and gradient to the textbook layers. Shapes: T time, B batch, I_l the
layer's input, G*H the gate blocks, H_out = P or H.
"""

from __future__ import annotations

import numpy as np

from rnnkit.scratch import recurrent_layers as textbook
from rnnkit.scratch.fast.gru_loop import gru_recur, gru_recur_backward
from rnnkit.scratch.fast.lstm_loop import lstm_recur, lstm_recur_backward
from rnnkit.scratch.fast.reductions import sum_rows
from rnnkit.scratch.fast.rnn_loop import rnn_recur, rnn_recur_backward


class _Projected:
    """One direction as input projection + fast loop + weight gradient; subclasses give the loop."""

    def _recur(self, gx, state0, p):  # -> (hs (T, B, H_out), state_T, cache)
        raise NotImplementedError

    def _recur_backward(self, d_hs, d_state_T, cache):  # -> (d_gx, d_state0, grads)
        raise NotImplementedError

    def _run_direction(self, x, state0, p, is_index):
        """x (T, B, I_l) floats or (T, B) indices -> (hs (T, B, H_out), state_T, cache)."""
        T, B = x.shape[:2]
        if is_index:
            gx = np.ascontiguousarray(p["weight_ih"].T)[x]  # (T, B, G*H): row lookup = one-hot matmul
        else:
            gx = (x.reshape(T * B, -1) @ p["weight_ih"].T).reshape(T, B, -1)
        if self.bias:
            gx += p["bias_ih"]
        hs, state_T, cache = self._recur(gx, state0, p)
        return hs, state_T, (x, is_index, p, cache)

    def _run_direction_backward(self, d_hs, d_state_T, cache):
        """Returns (d_x (T, B, I_l) or None for indices, d_state0, grads under cell names)."""
        x, is_index, p, recur_cache = cache
        d_gx, d_state0, grads = self._recur_backward(d_hs, d_state_T, recur_cache)
        T, B = x.shape[:2]
        flat = d_gx.reshape(T * B, -1)  # (T*B, G*H)
        d_x = None
        if is_index:  # one-hot rows: dW_ih[:, v] = sum of d gx over the steps with x = v
            grads["weight_ih"] = _scatter_columns(x.reshape(-1), flat, self.input_size)
        else:
            grads["weight_ih"] = flat.T @ x.reshape(T * B, -1)  # (G*H, I_l)
            d_x = (flat @ p["weight_ih"]).reshape(T, B, -1)  # (T, B, I_l)
        if self.bias:
            grads["bias_ih"] = sum_rows(flat)
        return d_x, d_state0, grads


def _scatter_columns(idx, rows, size):
    """W (G, size) with W[:, v] = sum of rows[n] over n with idx[n] = v, i.e. rows^T @ one_hot(idx).

    A small vocabulary takes the dense one-hot product (one BLAS call); a large one sorts the
    indices and sums runs (np.add.reduceat), which does not grow with the vocabulary. Both are
    much faster than np.add.at.
    """
    if size <= 1024:
        one_hot = np.zeros((len(idx), size), rows.dtype)  # (N, V)
        one_hot[np.arange(len(idx)), idx] = 1
        return rows.T @ one_hot  # (G, V)
    order = np.argsort(idx, kind="stable")
    sorted_idx = idx[order]
    starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
    w_t = np.zeros((size, rows.shape[1]), rows.dtype)  # (size, G)
    w_t[sorted_idx[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return np.ascontiguousarray(w_t.T)


class RNN(_Projected, textbook.RNN):
    """Elman RNN layers, h_t = f(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), by `rnn_recur`.

    As `rnnkit.scratch.RNN` (torch.nn.RNN's arguments; x (T, B, I) -> (T, B, D*H), h_n
    (L*D, B, H)), computed by the tuned loop.
    """

    def _recur(self, gx, h0, p):
        hs, cache = rnn_recur(gx, h0, p["weight_hh"], p.get("bias_hh"), self.nonlinearity)
        return hs, hs[-1], cache

    def _recur_backward(self, d_hs, d_hT, cache):
        return rnn_recur_backward(d_hs, d_hT, cache)


class GRU(_Projected, textbook.GRU):
    """GRU layers, h_t = (1 - z) n + z h_{t-1} (gates r, z, n), by `gru_recur`.

    As `rnnkit.scratch.GRU` (torch.nn.GRU's arguments; x (T, B, I) -> (T, B, D*H), h_n
    (L*D, B, H)), computed by the tuned loop.
    """

    def _recur(self, gx, h0, p):
        hs, cache = gru_recur(gx, h0, p["weight_hh"], p.get("bias_hh"))
        return hs, hs[-1], cache

    def _recur_backward(self, d_hs, d_hT, cache):
        return gru_recur_backward(d_hs, d_hT, cache)


class LSTM(_Projected, textbook.LSTM):
    """LSTM layers, c_t = f c_{t-1} + i g, h_t = (o tanh(c_t)) W_hr^T (gates i f g o), by lstm_recur.

    As `rnnkit.scratch.LSTM` (torch.nn.LSTM's arguments with proj_size; state (h, c):
    h (L*D, B, H_out), c (L*D, B, H)), computed by the tuned loop.
    """

    def _recur(self, gx, state0, p):
        h0, c0 = state0
        return lstm_recur(gx, h0, c0, p["weight_hh"], p.get("bias_hh"), p.get("weight_hr"))

    def _recur_backward(self, d_hs, d_state_T, cache):
        d_hT, d_cT = (None, None) if d_state_T is None else d_state_T
        return lstm_recur_backward(d_hs, d_hT, d_cT, cache)
