"""The LSTM recurrence over T steps, speed-tuned: the loop `rnnkit.scratch.fast.LSTM` runs.

The same numbers as `rnnkit.scratch.lstm_cell.lstm_step` applied T times (up to float
rounding; tests/scratch/fast/test_scratch_fast_equivalence.py ties them), computed differently:

    a_t = gx_t + h_{t-1} W_hh^T + b_hh          gx_t = x_t W_ih^T + b_ih given for all T  (B, 4H)
    [i, f, g, o] = tanh(a_t * SCALE) * SCALE + SHIFT      one tanh for all four gates       (B, 4H)
    c_t = f * c_{t-1} + i * g,   h_t = (o * tanh(c_t)) W_hr^T (or without W_hr)            (B, H)

The scaled tanh uses σ(a) = 0.5 tanh(a/2) + 0.5 (SCALE = [½, ½, 1, ½], SHIFT = [½, ½, 0, ½] per
gate), with the scale folded into W_hh and b_hh once per call. Derivation: docs/bptt.md, "LSTM".
Shapes: T time, B batch, H hidden, P proj_size.
"""

from __future__ import annotations

import numpy as np

from rnnkit.scratch.fast.reductions import sum_rows

# Preallocated arrays and in-place ufuncs: the per-step cost is a matmul and a few passes over
# (B, 4H) buffers small enough to stay in cache (computing the gate derivatives for all T at once,
# on (T, B, 4H) temporaries, was slower at T=128, B=32, H=256: memory traffic).

# σ(a) = 0.5 tanh(a/2) + 0.5, so all four gates are one tanh on a scaled pre-activation:
# act = tanh(a * SCALE) * SCALE + SHIFT, per gate (i, f, g, o).
_SCALE = np.array([0.5, 0.5, 1.0, 0.5])
_SHIFT = np.array([0.5, 0.5, 0.0, 0.5])
# f'(a) from the activation y: σ' = y (1 - y), tanh' = (1 - y)(1 + y) = (1 - y)(y + PLUS)
_PLUS = np.array([0.0, 0.0, 1.0, 0.0])


def _per_gate(v, H, dtype):
    return np.repeat(v, H).astype(dtype)  # (4H,)


def lstm_recur(gx, h0, c0, w_hh, b_hh=None, w_hr=None):
    """Run the LSTM over T steps. gx (T, B, 4H) (not modified); h0 (B, P or H), c0 (B, H).

    Returns (hs (T, B, P or H), (h_T, c_T), cache).
    """
    T, B, G = gx.shape
    H = G // 4
    dt = gx.dtype
    scale, shift = _per_gate(_SCALE, H, dt), _per_gate(_SHIFT, H, dt)
    # scale the weights once so that a_scaled = gx*scale + h (W_hh*scale)^T; the bias likewise.
    # Per step work stays on (B, 4H) arrays that live in cache; no pass over all of gx.
    w_hh_s = np.ascontiguousarray((w_hh * scale[:, None]).T)  # (P or H, 4H), contiguous for BLAS
    b_s = None if b_hh is None else b_hh * scale
    P = h0.shape[1]
    acts = np.empty((T, B, G), dt)  # i, f, g, o of every step
    cs = np.empty((T + 1, B, H), dt)  # cs[0] = c0
    tcs = np.empty((T, B, H), dt)  # tanh(c_t)
    hs = np.empty((T + 1, B, P), dt)  # hs[0] = h0
    ms = np.empty((T, B, H), dt) if w_hr is not None else hs[1:]  # m_t (= h_t without projection)
    ig = np.empty((B, H), dt)
    xs = np.empty((B, G), dt)
    hs[0], cs[0] = h0, c0
    w_hr_t = None if w_hr is None else np.ascontiguousarray(w_hr.T)
    for t in range(T):
        a = acts[t]
        np.matmul(hs[t], w_hh_s, out=a)  # (B, 4H)
        np.multiply(gx[t], scale, out=xs)
        a += xs
        if b_s is not None:
            a += b_s
        np.tanh(a, out=a)
        a *= scale
        a += shift  # a now holds [i, f, g, o]
        np.multiply(a[:, :H], a[:, 2 * H : 3 * H], out=ig)  # i * g
        np.multiply(a[:, H : 2 * H], cs[t], out=cs[t + 1])  # f * c_{t-1}
        cs[t + 1] += ig
        np.tanh(cs[t + 1], out=tcs[t])
        np.multiply(a[:, 3 * H :], tcs[t], out=ms[t])  # m_t = o * tanh(c_t)
        if w_hr_t is not None:
            np.matmul(ms[t], w_hr_t, out=hs[t + 1])  # (B, P)
    cache = (acts, cs, tcs, hs, ms, w_hh, b_hh is not None, w_hr)
    return hs[1:], (hs[-1], cs[-1]), cache


def lstm_recur_backward(d_hs, d_hT, d_cT, cache):
    """Backward of `lstm_recur`. d_hs (T, B, P or H) or None; d_hT, d_cT (B, .) or None.

    Returns (d_gx (T, B, 4H), (d_h0, d_c0), grads {weight_hh, bias_hh, weight_hr}).
    """
    acts, cs, tcs, hs, ms, w_hh, has_bias, w_hr = cache
    T, B, G = acts.shape
    H = G // 4
    dt = acts.dtype
    plus = _per_gate(_PLUS, H, dt)
    P = hs.shape[2]
    da = np.empty_like(acts)  # (T, B, 4H) gradients on the pre-activations = d gx
    dh_all = np.empty((T, B, P), dt) if w_hr is not None else None  # for dW_hr in one matmul
    dh = np.zeros((B, P), dt) if d_hT is None else np.array(d_hT, dtype=dt)
    dc = np.zeros((B, H), dt) if d_cT is None else np.array(d_cT, dtype=dt)
    deriv, tmp4 = np.empty((B, G), dt), np.empty((B, G), dt)  # per-step buffers that stay in cache
    k, tmp = np.empty((B, H), dt), np.empty((B, H), dt)
    for t in range(T - 1, -1, -1):
        a = acts[t]
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]  # (B, H) views
        tc = tcs[t]
        if d_hs is not None:
            dh += d_hs[t]
        if w_hr is not None:
            dh_all[t] = dh
            dm = dh @ w_hr  # (B, H)
        else:
            dm = dh
        # dc_tot = dc + dm * o * (1 - tanh(c)^2)
        np.multiply(tc, tc, out=k)
        np.subtract(1.0, k, out=k)
        k *= o
        np.multiply(dm, k, out=tmp)
        dc += tmp
        # gate gradients before the nonlinearity: [dc g, dc c_{t-1}, dc i, dm tanh(c)]
        d = da[t]
        np.multiply(dc, g, out=d[:, :H])
        np.multiply(dc, cs[t], out=d[:, H : 2 * H])
        np.multiply(dc, i, out=d[:, 2 * H : 3 * H])
        np.multiply(dm, tc, out=d[:, 3 * H :])
        # times f'(a) = (1 - y)(y + PLUS): σ' = y(1 - y), tanh' = (1 - y)(1 + y)
        np.subtract(1.0, a, out=deriv)
        np.add(a, plus, out=tmp4)
        deriv *= tmp4
        d *= deriv
        dc *= f  # dc_{t-1}
        dh = d @ w_hh  # (B, P or H) dh_{t-1}
    flat = da.reshape(T * B, G)
    grads = {"weight_hh": flat.T @ hs[:-1].reshape(T * B, P)}  # (4H, P or H)
    if has_bias:
        grads["bias_hh"] = sum_rows(flat)
    if w_hr is not None:
        grads["weight_hr"] = dh_all.reshape(T * B, P).T @ ms.reshape(T * B, H)  # (P, H)
    return da, (dh, dc), grads
