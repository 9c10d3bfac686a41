"""The GRU recurrence over T steps, speed-tuned: the loop `rnnkit.scratch.fast.GRU` runs.

The same numbers as `rnnkit.scratch.gru_cell.gru_step` applied T times (up to float rounding;
tests/scratch/fast/test_scratch_fast_equivalence.py ties them), computed differently:

    gx_t = x_t W_ih^T + b_ih (all T at once),   gh_t = h_{t-1} W_hh^T + b_hh            (B, 3H)
    [r, z] = 0.5 tanh(0.5 (gx + gh)[:, :2H]) + 0.5       one tanh for both gates          (B, 2H)
    n = tanh(gx_n + r * gh_n),   h_t = n + z * (h_{t-1} - n)                              (B, H)

The halves of σ(a) = 0.5 tanh(a/2) + 0.5 are folded into the r, z columns of gx and W_hh once per
call; the backward precomputes for all T the coefficients that do not depend on the recurrence.
Derivation: docs/bptt.md, section "GRU". Shapes: T time, B batch, H hidden.
"""

from __future__ import annotations

import numpy as np

from rnnkit.scratch.fast.reductions import sum_rows


def gru_recur(gx, h0, w_hh, b_hh=None):
    """Run the GRU over T steps. gx (T, B, 3H) is overwritten; h0 (B, H).

    Returns (hs (T, B, H), cache); h_T = hs[-1].
    """
    T, B, G = gx.shape
    H = G // 3
    dt = gx.dtype
    if b_hh is not None:
        gx[:, :, : 2 * H] += b_hh[: 2 * H]  # r and z see both biases added; n keeps b_hn inside r*(.)
    # σ(a) = 0.5 tanh(a/2) + 0.5: pre-scale the r, z columns so each step needs one tanh for both
    gx[:, :, : 2 * H] *= 0.5
    w_hh_t = w_hh.T.copy()  # (H, 3H)
    w_hh_t[:, : 2 * H] *= 0.5
    b_hn = None if b_hh is None else b_hh[2 * H :]
    acts = np.empty((T, B, G), dt)  # r, z, n of every step
    ghn = np.empty((T, B, H), dt)  # h_{t-1} W_hn^T + b_hn, needed for da_r
    hs = np.empty((T + 1, B, H), dt)
    hs[0] = h0
    gh = np.empty((B, G), dt)
    for t in range(T):
        a = acts[t]
        np.matmul(hs[t], w_hh_t, out=gh)  # (B, 3H)
        rz = a[:, : 2 * H]
        np.add(gx[t, :, : 2 * H], gh[:, : 2 * H], out=rz)
        np.tanh(rz, out=rz)
        rz *= 0.5
        rz += 0.5  # [r, z]
        gn = ghn[t]
        if b_hn is not None:
            np.add(gh[:, 2 * H :], b_hn, out=gn)
        else:
            gn[...] = gh[:, 2 * H :]
        n = a[:, 2 * H :]
        np.multiply(a[:, :H], gn, out=n)
        n += gx[t, :, 2 * H :]
        np.tanh(n, out=n)
        h = hs[t + 1]
        np.subtract(hs[t], n, out=h)
        h *= a[:, H : 2 * H]
        h += n  # h_t = n + z (h_{t-1} - n)
    return hs[1:], (acts, ghn, hs, w_hh, b_hh is not None)


def gru_recur_backward(d_hs, d_hT, cache):
    """Backward of `gru_recur`. d_hs (T, B, H) or None; d_hT (B, H) or None.

    Returns (d_gx (T, B, 3H), d_h0 (B, H), grads {weight_hh, bias_hh}).
    """
    acts, ghn, hs, w_hh, has_bias = cache
    T, B, G = acts.shape
    H = G // 3
    dt = acts.dtype
    r, z, n = acts[:, :, :H], acts[:, :, H : 2 * H], acts[:, :, 2 * H :]  # (T, B, H) views
    # The coefficients that do not depend on the backward recurrence, for all T at once:
    k_n = (1.0 - z) * (1.0 - n * n)  # da_n = dh * k_n
    k_z = (hs[:-1] - n) * z * (1.0 - z)  # da_z = dh * k_z
    k_r = ghn * r * (1.0 - r)  # da_r = da_n * k_r
    d_gh = np.empty_like(acts)  # (T, B, 3H)
    da_n = np.empty((T, B, H), dt)
    dh = np.zeros((B, H), dt) if d_hT is None else np.array(d_hT, dtype=dt)
    for t in range(T - 1, -1, -1):
        if d_hs is not None:
            dh += d_hs[t]
        d_gh_t = d_gh[t]  # (B, 3H), filled in place with [da_r, da_z, da_n * r]
        np.multiply(dh, k_n[t], out=da_n[t])
        np.multiply(da_n[t], k_r[t], out=d_gh_t[:, :H])
        np.multiply(dh, k_z[t], out=d_gh_t[:, H : 2 * H])
        np.multiply(da_n[t], r[t], out=d_gh_t[:, 2 * H :])
        dh *= z[t]
        dh += d_gh_t @ w_hh  # (B, H) dh_{t-1}
    d_gx = d_gh.copy()
    d_gx[:, :, 2 * H :] = da_n  # x's n-part enters outside the reset gate
    flat = d_gh.reshape(T * B, G)
    grads = {"weight_hh": flat.T @ hs[:-1].reshape(T * B, H)}
    if has_bias:
        grads["bias_hh"] = sum_rows(flat)
    return d_gx, dh, grads
