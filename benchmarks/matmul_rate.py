"""The limit that achieved GFLOP/s are a fraction of: the best rate of one large matrix product.

Plain Python over ``a @ b``, so the NumPy-only benchmark (scratch_charlm.py, which must not import
torch) and the torch ones (gflops.py) time their libraries' products the same way.
"""

from __future__ import annotations

import time


def matmul_gflops(a, b, repeats: int = 5) -> float:
    """GFLOP/s of ``a @ b`` (2 flops per multiply-add), best of ``repeats`` after one warm-up."""
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * a.shape[0] * a.shape[1] * b.shape[1] / best / 1e9
