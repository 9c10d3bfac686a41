"""Data parallelism in threads: one training step's batch split over several threads.

The streams of a batch are independent until their gradients are summed, so a step over B streams
equals the steps over slices B_1 + ... + B_K = B, combined:

    loss  = sum_k (B_k / B) loss_k          (each loss_k is a mean over T * B_k characters)
    grads = sum_k (B_k / B) grads_k         (the gradient of a mean is the mean of the gradients)
    state = concat_k state_k  (axis 1)      (the final state of every stream, in order)

Threads, not processes: NumPy lets go of the GIL inside its array loops and BLAS calls, which is
where a step spends its time once B is large, so K threads keep K cores busy. Whole-step slices
also parallelise what BLAS threads cannot: tanh, softmax and the other element-wise passes, which
NumPy runs on one core. Give each thread one BLAS thread (``OPENBLAS_NUM_THREADS=1``, or
``threads x BLAS threads <= cores``): threads that wait for busy cores make a step much slower.

    split = BatchSplit(2)
    loss, grads, state = split(model.loss_and_grads, x_idx, y_idx, state)    # x_idx (T, B)
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class BatchSplit:
    """Run ``loss_and_grads(x, y, state) -> (loss, grads, state)`` on slices of the batch at once.

    x and y are (T, B) (axis 1 is the batch); a state is None, an array (L, B, H) or a tuple of
    them (LSTM's (h, c)). With threads=1 it calls ``loss_and_grads`` unchanged.
    """

    def __init__(self, threads: int):
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="rnnkit-scratch") if threads > 1 else None

    def __call__(self, loss_and_grads: Callable, x, y, state=None):
        B = x.shape[1]
        if self._pool is None or B < 2:
            return loss_and_grads(x, y, state)
        bounds = np.linspace(0, B, min(self.threads, B) + 1).round().astype(int)
        slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        jobs = [self._pool.submit(loss_and_grads, x[:, s], y[:, s], _take(state, s)) for s in slices]
        results = [job.result() for job in jobs]  # (loss_k, grads_k, state_k), in slice order
        weights = [(s.stop - s.start) / B for s in slices]
        loss = sum(w * r[0] for w, r in zip(weights, results))
        grads = {}
        for name in results[0][1]:
            g = results[0][1][name] * weights[0]
            for w, r in zip(weights[1:], results[1:]):
                g += w * r[1][name]
            grads[name] = g
        return loss, grads, _join([r[2] for r in results])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _take(state, s: slice):
    """The streams ``s`` of a state: None, an array (L, B, H) or a tuple of arrays."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(_take(part, s) for part in state)
    return state[:, s]


def _join(states):
    """Inverse of :func:`_take` over consecutive slices: concatenate along the batch axis."""
    first = states[0]
    if isinstance(first, (tuple, list)):
        return tuple(_join([st[i] for st in states]) for i in range(len(first)))
    return np.concatenate(states, axis=1)
