"""The character LM, speed-tuned: tuned layers, and the output layer fused with the loss.

`FastNumpyCharLM` is `rnnkit.scratch.charlm.NumpyCharLM` (same arguments, parameters,
sampling) with two changes that leave the numbers the same up to float rounding
(tests/scratch/fast/test_scratch_fast_equivalence.py):

* its recurrent layers are `rnnkit.scratch.fast.loop_layers`' (input projection in one
  matmul or lookup, the speed-tuned loops);
* ``loss_and_grads`` runs the output layer and the softmax cross-entropy as one pass in the
  (V, N) layout, N = T*B, forward and backward (`fused_head`):

      z = W_ho h^T + b_ho (V, N),   loss = (1/N) sum_n (log sum_v exp z[v, n] - z[y_n, n])
      d z = (softmax_v(z) - onehot(y)) / N,   d h = d z^T W_ho,   dW_ho = d z h,   db_ho = sum_n d z

This is the model ``rnnkit.scratch.charlm.fit`` trains and ``rnnkit train --engine numpy`` runs.
"""

from __future__ import annotations

import numpy as np

from rnnkit.scratch.charlm import NumpyCharLM
from rnnkit.scratch.fast.loop_layers import GRU, LSTM, RNN


def fused_head(hs, y, w, b):
    """Output layer and mean cross-entropy fused, forward and backward, in the (V, N) layout.

    hs (T, B, H), y (N,) with N = T*B, w (V, H), b (V,). The same numbers as ``linear_forward`` +
    ``cross_entropy`` + ``linear_backward`` up to float rounding, but with the vocabulary first:
    every per-row reduction of the softmax (max, sum of exp) then runs over V contiguous rows of
    length N, which NumPy vectorises, instead of over short rows of V = 65 (several times slower).
    Returns (loss, d_hs (T, B, H), {weight_ho (V, H), bias_ho (V,)}).
    """
    flat = hs.reshape(-1, hs.shape[-1])  # (N, H)
    N = flat.shape[0]
    cols = np.arange(N)
    z = w @ flat.T  # (V, N) logits, transposed
    z += b[:, None]
    z -= z.max(axis=0)  # shift each row of logits by its max: exp never overflows
    picked = z[y, cols]  # (N,) shifted logit of the target
    np.exp(z, out=z)
    s = z.sum(axis=0)  # (N,) sum of exp
    loss = float(np.log(s).sum(dtype=np.float64) - picked.sum(dtype=np.float64)) / N
    # d z = (softmax - onehot(y)) / N, built in z's buffer
    z *= (1.0 / (N * s)).astype(z.dtype)
    z[y, cols] -= z.dtype.type(1.0 / N)
    d_hs = (z.T @ w).reshape(hs.shape)  # (T, B, H)
    return loss, d_hs, {"weight_ho": z @ flat, "bias_ho": z.sum(axis=1)}  # (V, H), (V,)


class FastNumpyCharLM(NumpyCharLM):
    """One-hot characters -> tuned recurrent layers -> logits: NumpyCharLM's numbers, faster.

        h_t = cell(x_t, h_{t-1})  (B, H)      logits_t = h_t W_ho^T + b_ho  (B, V)

    Same constructor, parameters and methods as `NumpyCharLM`; ``loss_and_grads(x_idx
    (T, B), y_idx (T, B), state) -> (loss, grads, state)`` runs the fused head.
    """

    layer_classes = {"rnn": RNN, "lstm": LSTM, "gru": GRU}

    def loss_and_grads(self, x_idx, y_idx, state=None):
        """Mean cross-entropy (nats per character) of predicting y_idx (T, B) from x_idx (T, B).

        Returns (loss, grads, state): ``state`` is the final state, to carry into the next chunk.
        """
        y_idx = self._check_targets(x_idx, y_idx)
        hs, state, rnn_cache = self.rnn.forward(x_idx, state)  # (T, B, H)
        loss, d_hs, head_grads = self._head_loss_and_grads(hs, y_idx.reshape(-1))
        _, _, grads = self.rnn.backward(d_hs, rnn_cache)
        grads.update(head_grads)
        return loss, grads, state

    def _head_loss_and_grads(self, hs, y):
        """`fused_head` on this model's output layer: (loss, d_hs (T, B, H), head grads)."""
        return fused_head(hs, y, self._params["weight_ho"], self._params["bias_ho"])
