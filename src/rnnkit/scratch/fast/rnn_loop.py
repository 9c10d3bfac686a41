"""The Elman recurrence over T steps, speed-tuned: the loop `rnnkit.scratch.fast.RNN` runs.

The same numbers as `rnnkit.scratch.rnn_cell.rnn_step` applied T times (up to float rounding;
tests/scratch/fast/test_scratch_fast_equivalence.py ties them), computed differently:

    gx_t = x_t W_ih^T + b_ih        given for all T at once (one matmul in the layer)     (T, B, H)
    h_t  = f(gx_t + b_hh + h_{t-1} W_hh^T)      the only part that runs step by step      (B, H)

b_hh is folded into gx once, each step writes its matmul into a preallocated slot of hs and
applies f in place, and the backward forms dW_hh = sum_t da_t^T h_{t-1} as one matmul over all
T*B rows after the loop. Derivation: docs/bptt.md, section "Elman".
"""

from __future__ import annotations

import numpy as np

from rnnkit.scratch.fast.reductions import sum_rows


def rnn_recur(gx, h0, w_hh, b_hh, nonlinearity="tanh"):
    """h_t = f(gx_t + h_{t-1} W_hh^T + b_hh) for t = 0..T-1.

    gx (T, B, H) is overwritten. h0 (B, H). Returns (hs (T, B, H), cache); h_T = hs[-1].
    """
    T, B, H = gx.shape
    if b_hh is not None:
        gx += b_hh  # the two biases add, so fold b_hh in once for all T
    hs = np.empty((T + 1, B, H), dtype=gx.dtype)  # hs[0] = h0, hs[t+1] = h_t
    hs[0] = h0
    w_hh_t = np.ascontiguousarray(w_hh.T)  # matmul into out= is much faster from a contiguous operand
    for t in range(T):
        a = hs[t + 1]
        np.matmul(hs[t], w_hh_t, out=a)  # (B, H)
        a += gx[t]
        if nonlinearity == "tanh":
            np.tanh(a, out=a)
        else:
            np.maximum(a, 0, out=a)
    return hs[1:], (hs, w_hh, b_hh is not None, nonlinearity)


def rnn_recur_backward(d_hs, d_hT, cache):
    """Backward of `rnn_recur`.

    d_hs (T, B, H) gradient on every h_t from above (or None); d_hT (B, H) on the final state (or
    None). Returns (d_gx (T, B, H), d_h0 (B, H), grads {weight_hh, bias_hh}).
    """
    hs, w_hh, has_bias, nonlinearity = cache
    T = hs.shape[0] - 1
    # da starts as f' for all steps at once and is overwritten step by step with dh * f' in place
    # (no (T, B, H) temporaries beyond this one)
    da = np.multiply(hs[1:], hs[1:]) if nonlinearity == "tanh" else (hs[1:] > 0).astype(hs.dtype)
    if nonlinearity == "tanh":
        np.subtract(1.0, da, out=da)  # 1 - h^2
    w_hh = np.ascontiguousarray(w_hh)  # matmul into out= is much faster from a contiguous operand
    dh = np.zeros_like(hs[0]) if d_hT is None else np.array(d_hT, dtype=hs.dtype)  # (B, H)
    for t in range(T - 1, -1, -1):
        if d_hs is not None:
            dh += d_hs[t]  # the step's own gradient plus what flowed back from t+1
        np.multiply(dh, da[t], out=da[t])
        np.matmul(da[t], w_hh, out=dh)  # (B, H) gradient on h_{t-1}
    flat = da.reshape(-1, da.shape[-1])  # (T*B, H)
    grads = {"weight_hh": flat.T @ hs[:-1].reshape(-1, hs.shape[-1])}  # all steps in one matmul
    if has_bias:
        grads["bias_hh"] = sum_rows(flat)
    return da, dh, grads
