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

from rnnkit.checks import check_choice
from rnnkit.scratch.module import to_numpy

_REDUCTIONS = ("mean", "sum")


def _check_reduction(reduction):
    check_choice("reduction", reduction, _REDUCTIONS)


def log_softmax(z, axis=-1):
    """log softmax along ``axis``, shifted by the max so exp never overflows."""
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def softmax(z, axis=-1):
    """softmax along ``axis``, shifted by the max so exp never overflows."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def check_targets(logits, targets, ignore_index=-100, reduction="mean"):
    """The checks of `cross_entropy_forward`, before any work.

    Returns (z (N, V), y (N,), keep (N,) true on counted rows, the logits' shape (..., V)).
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
    keep = y != ignore_index  # (N,) the counted rows
    bad = keep & ((y < 0) | (y >= V))
    if bad.any():
        raise ValueError(f"targets must lie in [0, {V}) or equal ignore_index={ignore_index}, got {y[bad][0]}")
    return z, y, keep, logits.shape


def cross_entropy_forward(logits, targets, ignore_index=-100, reduction="mean"):
    """Softmax cross-entropy: loss = -(1/N) sum_n log softmax(z_n)[y_n] over the N counted rows.

    logits (..., V), targets (...) integers in [0, V) or ``ignore_index``. Returns (loss, cache).
    With reduction "mean" and every target ignored the loss is nan, as in torch.
    """
    z, y, keep, shape = check_targets(logits, targets, ignore_index, reduction)
    log_p = log_softmax(z)  # (N, V)
    rows = np.flatnonzero(keep)  # (N_kept,)
    count = rows.size
    total = -log_p[rows, y[rows]].sum()  # -sum_n log p[n, y_n]
    if reduction == "sum":
        loss = total
    else:
        loss = total / count if count else np.float64("nan")
    cache = (np.exp(log_p), y, rows, count, reduction, shape)  # exp(log p) = softmax(z)
    return float(loss), cache


def cross_entropy_backward(d_loss, cache):
    """d logits (..., V) = d_loss * (softmax(z) - onehot(y)) / N on counted rows, 0 on ignored ones."""
    p, y, rows, count, reduction, shape = cache
    scale = d_loss if reduction == "sum" else (d_loss / count if count else 0.0)
    d = np.zeros_like(p)  # (N, V): ignored rows contribute nothing
    d[rows] = p[rows] * scale
    d[rows, y[rows]] -= scale
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
