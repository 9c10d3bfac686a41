"""Losses with forward and backward: softmax cross-entropy over integer targets, mean squared error.

Cross-entropy (the class axis is the last one, so logits (T, B, V) go with targets (T, B)):

    log p = z - logsumexp(z)     with z = logits - max(logits) for stability
    loss  = -(1/N) sum_{n: y_n != ignore} log p[n, y_n]          N = number of counted targets
    d logits[n] = (softmax(z)[n] - onehot(y_n)) / N               (zero on ignored rows)

Mean squared error: loss = (1/N) sum (pred - target)^2 over all N entries, d pred = 2 (pred - target)/N.
Both match torch.nn.functional.cross_entropy / mse_loss (reduction "mean" or "sum").
"""

from __future__ import annotations

import numpy as np

from rnnkit.scratch.module import to_numpy
from rnnkit.scratch.ops import row_max

_REDUCTIONS = ("mean", "sum")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'mean' or 'sum'. Expected one of those, got {reduction!r}")


def log_softmax(z, axis=-1):
    """log softmax along ``axis``, shifted by the max so exp never overflows."""
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def softmax(z, axis=-1):
    """softmax along ``axis``, shifted by the max so exp never overflows."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def cross_entropy_forward(logits, targets, ignore_index=-100, reduction="mean"):
    """Softmax cross-entropy. logits (..., V), targets (...) integers in [0, V) or ``ignore_index``.

    Returns (loss, cache). With reduction "mean" and every target ignored the loss is nan, as in torch.
    """
    _check_reduction(reduction)
    logits, targets = to_numpy(logits), to_numpy(targets)
    if not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(f"targets must be integer class indices. Expected an integer array, got {targets.dtype}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"targets must have the shape of logits without the class axis. Expected "
            f"{logits.shape[:-1]}, got {targets.shape}"
        )
    V = logits.shape[-1]
    z = logits.reshape(-1, V)  # (N, V)
    y = targets.reshape(-1)  # (N,)
    keep = y != ignore_index
    bad = keep & ((y < 0) | (y >= V))
    if bad.any():
        raise ValueError(f"targets must lie in [0, {V}) or equal ignore_index={ignore_index}, got {y[bad][0]}")
    # exp(z - max) once: the loss needs its row sums, the backward its ratio to them (softmax)
    zmax = row_max(z)  # (N, 1)
    e = np.exp(z - zmax)  # (N, V)
    s = (e @ np.ones(V, e.dtype))[:, None]  # (N, 1) row sums, as one gemv
    rows = np.flatnonzero(keep)
    count = rows.size
    total = -(z[rows, y[rows]] - zmax[rows, 0] - np.log(s[rows, 0])).sum()  # -sum log p[n, y_n]
    if reduction == "sum":
        loss = total
    else:
        loss = total / count if count else np.float64("nan")
    cache = (e, s, y, keep, rows, count, reduction, logits.shape)
    return float(loss), cache


def cross_entropy_backward(d_loss, cache):
    """d logits (..., V) from the upstream scalar gradient d_loss."""
    e, s, y, keep, rows, count, reduction, shape = cache
    scale = d_loss if reduction == "sum" else (d_loss / count if count else 0.0)
    d = e * (scale / s).astype(e.dtype)  # scale * softmax, (N, V)
    d[rows, y[rows]] -= scale
    if rows.size != len(y):
        d[~keep] = 0.0  # ignored targets contribute nothing
    return d.reshape(shape)


def cross_entropy(logits, targets, ignore_index=-100, reduction="mean"):
    """(loss, d logits) in one call: forward then backward with d_loss = 1."""
    loss, cache = cross_entropy_forward(logits, targets, ignore_index, reduction)
    return loss, cross_entropy_backward(1.0, cache)


def mse_forward(pred, target, reduction="mean"):
    """Mean (or summed) squared error. pred and target of the same shape. Returns (loss, cache)."""
    _check_reduction(reduction)
    pred, target = to_numpy(pred), to_numpy(target)
    if pred.shape != target.shape:
        raise ValueError(f"target must have the shape of pred. Expected {pred.shape}, got {target.shape}")
    diff = pred - target
    total = float((diff * diff).sum())
    loss = total if reduction == "sum" else total / diff.size
    return loss, (diff, reduction)


def mse_backward(d_loss, cache):
    """d pred from the upstream scalar gradient d_loss."""
    diff, reduction = cache
    scale = 2.0 * d_loss if reduction == "sum" else 2.0 * d_loss / diff.size
    return diff * scale


def mse(pred, target, reduction="mean"):
    """(loss, d pred) in one call."""
    loss, cache = mse_forward(pred, target, reduction)
    return loss, mse_backward(1.0, cache)
