"""The limit that achieved GFLOP/s are a fraction of: the best rate of one large matrix product.

Plain Python over ``a @ b``, so the NumPy-only benchmark (scratch_charlm.py, which must not import
torch) and the torch ones (gflops.py) time their libraries' products the same way.
"""

from __future__ import annotations

import time


def best_seconds(call, repeats: int) -> float:
    """The shortest of ``repeats`` timed calls of ``call()``, after one warm-up call."""
    call()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_gflops(a, b, repeats: int = 5) -> float:
    """GFLOP/s of ``a @ b`` (2 flops per multiply-add), best of ``repeats`` after one warm-up."""
    return 2.0 * a.shape[0] * a.shape[1] * b.shape[1] / best_seconds(lambda: a @ b, repeats) / 1e9
