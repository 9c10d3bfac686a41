"""The affine output map y = h W^T + b over every step at once, forward and backward.

    y = h W^T + b              h (T, B, H), W (O, H), b (O,), y (T, B, O)
    dh = dy W,   dW = dy^T h,   db = sum_{T,B} dy          (one matmul each over T*B rows)
"""

from __future__ import annotations

import numpy as np


def linear_forward(h, w, b=None):
    """y (..., O) = h (..., H) W^T + b."""
    y = h.reshape(-1, h.shape[-1]) @ w.T  # (N, O)
    if b is not None:
        y += b
    return y.reshape(*h.shape[:-1], w.shape[0])


def linear_backward(dy, h, w, with_bias=True):
    """(dh (..., H), dW (O, H), db (O,) or None) from dy (..., O)."""
    dy2 = dy.reshape(-1, dy.shape[-1])  # (N, O), N = T*B rows
    dh = (dy2 @ w).reshape(h.shape)  # (..., H)
    dw = dy2.T @ h.reshape(-1, h.shape[-1])  # (O, H): summed over all N rows by the product
    db = dy2.sum(axis=0) if with_bias else None  # (O,)
    return dh, dw, db


def init_linear(rng, in_features, out_features, bias, dtype):
    """torch.nn.Linear's initialisation: every entry ~ U(-1/sqrt(in), 1/sqrt(in))."""
    bound = 1.0 / np.sqrt(in_features)
    w = rng.uniform(-bound, bound, (out_features, in_features)).astype(dtype)
    b = rng.uniform(-bound, bound, (out_features,)).astype(dtype) if bias else None
    return w, b
