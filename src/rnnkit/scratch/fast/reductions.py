"""Two reductions NumPy does slowly on the shapes BPTT produces, done the fast way.

NumPy reduces a (N, K) array along an axis with a per-row (or per-column) loop that costs several
times a matrix-vector product when K is small (a bias gradient over T*B rows, a softmax over a
vocabulary of 65). Same results up to float rounding.
"""

from __future__ import annotations

import numpy as np


def sum_rows(a: np.ndarray) -> np.ndarray:
    """sum over the first axis of a (N, K) array, as the product ones(N) @ a (one BLAS gemv): (K,)."""
    return np.ones(a.shape[0], a.dtype) @ a


def row_max(a: np.ndarray) -> np.ndarray:
    """max over the last axis of a (N, K) array by halving K (log2 K vectorised passes): (N, 1)."""
    m = a
    while m.shape[1] > 1:
        half = m.shape[1] // 2
        top = np.maximum(m[:, :half], m[:, half : 2 * half])  # (N, half), a new array
        if m.shape[1] % 2:  # odd width: fold the last column into the first
            np.maximum(top[:, :1], m[:, -1:], out=top[:, :1])
        m = top
    return m if m is not a else a.copy()
