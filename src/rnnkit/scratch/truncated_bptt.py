"""Truncated backpropagation through time for streams longer than memory.

Two forms, both generators that yield after each backward pass so the caller can update the
weights (``opt.step(step.grads)``) before the stream goes on:

* `bptt_chunks` -- the form language models use: cut the stream into chunks of ``k`` steps,
  carry the state from one chunk into the next, stop the gradient at chunk edges (in torch:
  ``h = h.detach()`` between chunks).
* `tbptt` -- TBPTT(k1, k2) of Williams & Peng (1990), as named by Sutskever (2013): the
  network runs one step at a time, and every k1 steps the losses of those k1 steps are
  backpropagated through the last k2 steps (k2 >= k1; each loss term is counted once). With
  k1 = k2 it is `bptt_chunks`.

The model is any scratch sequence model with ``forward(x, h) -> (out, h_n, cache)`` and
``backward(d_out, cache, d_h_n) -> (d_x, d_h, grads)`` (RNN, LSTM, GRU, Elman). The loss is a
function ``loss_fn(out, steps) -> (loss, d_out)`` of a block of outputs and the ``slice`` of stream
steps they belong to (so it can pick the targets).

References: R. J. Williams and J. Peng, "An efficient gradient-based algorithm for on-line
training of recurrent network trajectories", Neural Computation 2(4), 1990; I. Sutskever,
"Training recurrent neural networks", PhD thesis, University of Toronto, 2013, section 2.8.6.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from math import gcd

import numpy as np

from rnnkit.scratch.module import check_size


@dataclass
class TBPTTStep:
    """One backward pass: the steps whose losses it counts, their summed loss, the gradients,
    and the state after the last step (to continue the stream)."""

    steps: slice
    loss: float
    grads: dict[str, np.ndarray]
    state: object


def _add(total, grads):
    if total is None:
        return {k: np.array(v) for k, v in grads.items()}
    for k, v in grads.items():
        total[k] += v
    return total


def bptt_chunks(model, x, loss_fn, k, hx=None):
    """Chunked truncated BPTT over x (T, B, ...): yields a `TBPTTStep` per chunk of k steps.

    The state flows forward across chunk edges; no gradient flows back across them.
    """
    check_size("k", k)
    state = hx
    for start in range(0, len(x), k):
        steps = slice(start, min(start + k, len(x)))
        out, state, cache = model.forward(x[steps], state)
        loss, d_out = loss_fn(out, steps)
        _, _, grads = model.backward(d_out, cache)  # d_h_n = None: the chunk edge stops the gradient
        yield TBPTTStep(steps, float(loss), grads, state)


def tbptt(model, x, loss_fn, k1, k2, hx=None):
    """TBPTT(k1, k2) over x (T, B, ...): yields a `TBPTTStep` every k1 steps (and at the end).

    The stream is run in blocks of gcd(k1, k2) steps whose caches are kept for the last k2
    steps, so the backward pass replays the history the forward pass really took. Backward uses
    the model's current weights (the same as forward's when the weights are not updated in between).
    """
    check_size("k1", k1)
    check_size("k2", k2)
    if k2 < k1:
        raise ValueError(
            f"TBPTT(k1, k2) needs k2 >= k1 so every loss lies inside the window it is "
            f"backpropagated through. Expected k2 >= {k1}, got k2={k2}"
        )
    block = gcd(k1, k2)  # steps per forward call: every update and window edge falls on a block edge
    window = deque(maxlen=k2 // block)  # (start, stop, out, cache) of the last k2 steps
    state, last_update, T = hx, 0, len(x)
    for start in range(0, T, block):
        stop = min(start + block, T)
        out, state, cache = model.forward(x[start:stop], state)
        window.append((start, stop, out, cache))
        if stop % k1 and stop != T:
            continue
        total_loss, total_grads, d_h = 0.0, None, None
        for b_start, b_stop, b_out, b_cache in reversed(window):
            d_out = None
            if b_start >= last_update:  # a block of the last k1 steps: inject its losses
                loss, d_out = loss_fn(b_out, slice(b_start, b_stop))
                total_loss += float(loss)
            _, d_h, grads = model.backward(d_out, b_cache, d_h)
            total_grads = _add(total_grads, grads)
        yield TBPTTStep(slice(last_update, stop), total_loss, total_grads, state)
        last_update = stop
