"""The GRU cell in NumPy: one step and its backward, the equations the layers run step by step.

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

Shapes: B batch, I input, H hidden. ``rnnkit.scratch.GRU`` calls these two functions once per
step; the speed-tuned loop that computes the same numbers is ``rnnkit.scratch.fast.gru_loop``.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(a):
    # σ(a) = 1 / (1 + exp(-a)) = 0.5 * (1 + tanh(a/2)); the tanh form never overflows for large |a|
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def gru_step(x, h, params):
    """One GRU step: r, z from x and h; n = tanh(gx_n + r * gh_n); h_new = (1 - z) * n + z * h.

    x (B, I), h (B, H); params: weight_ih (3H, I), weight_hh (3H, H), optional bias_ih, bias_hh (3H,).
    Returns (h_new (B, H), cache).
    """
    gx = x @ params["weight_ih"].T  # (B, 3H)
    gh = h @ params["weight_hh"].T  # (B, 3H)
    if "bias_ih" in params:
        gx = gx + params["bias_ih"]
        gh = gh + params["bias_hh"]
    gx_r, gx_z, gx_n = np.split(gx, 3, axis=1)  # (B, H) each
    gh_r, gh_z, gh_n = np.split(gh, 3, axis=1)  # (B, H) each
    r = _sigmoid(gx_r + gh_r)
    z = _sigmoid(gx_z + gh_z)
    n = np.tanh(gx_n + r * gh_n)
    h_new = (1.0 - z) * n + z * h  # (B, H)
    return h_new, (x, h, r, z, n, gh_n, params)


def gru_step_backward(d_h_new, cache):
    """Backward of `gru_step`: d gx = [da_r, da_z, da_n], d gh = [da_r, da_z, da_n * r].

    d_h_new (B, H) -> (d_x (B, I), d_h (B, H), grads keyed like params).
    """
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
    d_h = d_h_new * z + d_gh @ params["weight_hh"]  # h reaches h_new directly and through gh
    return d_gx @ params["weight_ih"], d_h, grads
