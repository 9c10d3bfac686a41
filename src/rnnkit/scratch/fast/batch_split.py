"""Data parallelism in threads: one training step's batch split over several threads.

The streams of a batch are independent until their gradients are summed, so a step over B streams
equals the steps over slices B_1 + ... + B_K = B, combined:

    loss  = sum_k (B_k / B) loss_k          (each loss_k is a mean over T * B_k characters)
    grads = sum_k (B_k / B) grads_k         (the gradient of a mean is the mean of the gradients)
    state = concat_k state_k  (axis 1)      (the final state of every stream, in order)

Threads, not processes: NumPy lets go of the GIL inside its array loops and BLAS calls, which is
where a step spends its time once B is large, so K threads keep K cores busy. Whole-step slices
also parallelise what BLAS threads cannot: tanh, softmax and the other element-wise passes, which
NumPy runs on one core. Each thread must have its own cores: with NumPy's default BLAS threads
(all cores) two threads were slower than one here (oversubscribed cores wait for each other). So
while the slices run, BatchSplit limits BLAS to cores // threads threads each, through threadpoolctl
(process-wide for that time, then restored); without threadpoolctl it warns, and
``OPENBLAS_NUM_THREADS=1`` does the same by hand.

    split = BatchSplit(2)
    loss, grads, state = split(model.loss_and_grads, x_idx, y_idx, state)    # x_idx (T, B)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np

from rnnkit.checks import check_positive_int

try:  # optional: NumPy alone is enough for rnnkit.scratch
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - exercised by monkeypatching in the tests
    ThreadpoolController = None


MIN_SLICE = 128  # streams; a slice smaller than this is not worth a thread (see BatchSplit)


class BatchSplit:
    """Run ``loss_and_grads(x, y, state) -> (loss, grads, state)`` on slices of the batch at once.

    x and y are (T, B) (axis 1 is the batch); a state is None, an array (L, B, H) or a tuple of
    them (LSTM's (h, c)). A batch is cut into at most ``threads`` slices of at least ``min_slice``
    streams: smaller slices cost more in hand-offs than they gain. Two threads against one, char
    LM H=100 on 2 cores (``benchmarks/scratch_charlm.py --batch 128 256 512 1024 --min-slice 1``):
    0.97x at B = 128, 1.24x at 256, 1.42x at 512, 1.74x at 1024. With one slice it calls
    ``loss_and_grads`` as is.
    """

    def __init__(self, threads: int, min_slice: int = MIN_SLICE):
        check_positive_int("threads", threads)
        check_positive_int("min_slice", min_slice)
        self.threads, self.min_slice = threads, min_slice
        self._pool = self._blas = self.blas_threads = None
        if threads > 1:
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="rnnkit-scratch")
            self.blas_threads = max(1, _cores() // threads)
            if ThreadpoolController is not None:
                self._blas = ThreadpoolController()
            else:
                warnings.warn(
                    f"threadpoolctl is not installed, so BatchSplit({threads}) cannot limit BLAS to "
                    f"{self.blas_threads} thread(s) per slice: set OPENBLAS_NUM_THREADS="
                    f"{self.blas_threads} before NumPy loads, or threads may fight for cores",
                    RuntimeWarning, stacklevel=2,
                )

    def parts(self, batch_size: int) -> int:
        """How many slices a batch of ``batch_size`` streams is cut into (1: not split)."""
        return max(1, min(self.threads, batch_size // self.min_slice))

    def __call__(self, loss_and_grads: Callable, x, y, state=None):
        B = x.shape[1]
        parts = self.parts(B)
        if self._pool is None or parts < 2:
            return loss_and_grads(x, y, state)
        bounds = np.linspace(0, B, parts + 1).round().astype(int)
        slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        limit = self._blas.limit(limits=self.blas_threads, user_api="blas") if self._blas else nullcontext()
        with limit:
            jobs = [self._pool.submit(loss_and_grads, x[:, s], y[:, s], _take(state, s)) for s in slices]
            results = [job.result() for job in jobs]  # (loss_k, grads_k, state_k), in slice order
        weights = [(s.stop - s.start) / B for s in slices]
        loss = sum(w * r[0] for w, r in zip(weights, results))
        grads = {}
        for name in results[0][1]:
            total = results[0][1][name] * weights[0]
            for w, r in zip(weights[1:], results[1:]):
                total += w * r[1][name]
            grads[name] = total
        return loss, grads, _join([r[2] for r in results])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _take(state, s: slice):
    """The streams ``s`` of a state: None, an array (L, B, H) or a tuple of arrays."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(_take(part, s) for part in state)
    return state[:, s]


def _join(states):
    """Inverse of `_take` over consecutive slices: concatenate along the batch axis."""
    first = states[0]
    if isinstance(first, (tuple, list)):
        return tuple(_join([st[i] for st in states]) for i in range(len(first)))
    return np.concatenate(states, axis=1)
