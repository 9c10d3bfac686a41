"""The GRU cell in NumPy: one step with its backward, and the unrolled loop the layers use.

Update (torch.nn.GRU, gate order r, z, n; Cho et al. 2014, with the reset gate applied after the
recurrent matmul as in cuDNN and torch):

    [gx_r, gx_z, gx_n] = x_t W_ih^T + b_ih            [gh_r, gh_z, gh_n] = h_{t-1} W_hh^T + b_hh
    r = σ(gx_r + gh_r)     z = σ(gx_z + gh_z)     n = tanh(gx_n + r * gh_n)          (B, H) each
    h_t = (1 - z) * n + z * h_{t-1}

Backward (docs/bptt.md, section "GRU"): with dh the total gradient reaching h_t,

    da_n = dh (1 - z)(1 - n^2)        da_z = dh (h_{t-1} - n) z (1 - z)
    da_r = da_n gh_n r (1 - r)        d gh_n = da_n * r
    d gx = [da_r, da_z, da_n]         d gh = [da_r, da_z, da_n * r]
    dh_{t-1} = dh * z + d gh W_hh     dx = d gx W_ih

Shapes: B batch, I input, H hidden, T time.
"""

from __future__ import annotations

import numpy as np

from rnnkit.scratch.ops import sum_rows


def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # σ(a) without overflow in exp


# ----------------------------------------------------------------------------------------------
# One step: the readable reference.
# ----------------------------------------------------------------------------------------------


def gru_step(x, h, params):
    """One GRU step. x (B, I), h (B, H), params: weight_ih (3H, I), weight_hh (3H, H), optional
    bias_ih, bias_hh (3H,). Returns (h_new (B, H), cache)."""
    gx = x @ params["weight_ih"].T  # (B, 3H)
    gh = h @ params["weight_hh"].T  # (B, 3H)
    if "bias_ih" in params:
        gx = gx + params["bias_ih"]
        gh = gh + params["bias_hh"]
    gx_r, gx_z, gx_n = np.split(gx, 3, axis=1)
    gh_r, gh_z, gh_n = np.split(gh, 3, axis=1)
    r = _sigmoid(gx_r + gh_r)
    z = _sigmoid(gx_z + gh_z)
    n = np.tanh(gx_n + r * gh_n)
    h_new = (1.0 - z) * n + z * h  # (B, H)
    return h_new, (x, h, r, z, n, gh_n, params)


def gru_step_backward(d_h_new, cache):
    """Backward of :func:`gru_step`. d_h_new (B, H) -> (d_x (B, I), d_h (B, H), grads)."""
    x, h, r, z, n, gh_n, params = cache
    da_n = d_h_new * (1.0 - z) * (1.0 - n * n)  # (B, H)
    da_z = d_h_new * (h - n) * z * (1.0 - z)
    da_r = da_n * gh_n * r * (1.0 - r)
    d_gx = np.concatenate([da_r, da_z, da_n], axis=1)  # (B, 3H)
    d_gh = np.concatenate([da_r, da_z, da_n * r], axis=1)  # (B, 3H)
    grads = {"weight_ih": d_gx.T @ x, "weight_hh": d_gh.T @ h}
    if "bias_ih" in params:
        grads["bias_ih"] = d_gx.sum(0)
        grads["bias_hh"] = d_gh.sum(0)
    d_h = d_h_new * z + d_gh @ params["weight_hh"]
    return d_gx @ params["weight_ih"], d_h, grads


# ----------------------------------------------------------------------------------------------
# The unrolled loop, given gx = x W_ih^T + b_ih for all T (computed by the layer).
# ----------------------------------------------------------------------------------------------


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
    """Backward of :func:`gru_recur`. d_hs (T, B, H) or None; d_hT (B, H) or None.

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
        g = d_gh[t]
        np.multiply(dh, k_n[t], out=da_n[t])
        np.multiply(da_n[t], k_r[t], out=g[:, :H])
        np.multiply(dh, k_z[t], out=g[:, H : 2 * H])
        np.multiply(da_n[t], r[t], out=g[:, 2 * H :])
        dh *= z[t]
        dh += g @ w_hh  # (B, H) dh_{t-1}
    d_gx = d_gh.copy()
    d_gx[:, :, 2 * H :] = da_n  # x's n-part enters outside the reset gate
    flat = d_gh.reshape(T * B, G)
    grads = {"weight_hh": flat.T @ hs[:-1].reshape(T * B, H)}
    if has_bias:
        grads["bias_hh"] = sum_rows(flat)
    return d_gx, dh, grads
