"""The Elman cell in NumPy: one step with its backward, and the unrolled loop the layers use.

Update (torch.nn.RNNCell; f is tanh or relu):

    a_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh        (B, H)
    h_t = f(a_t)                                           (B, H)

Backward (docs/bptt.md, section "Elman"): with dh the total gradient reaching h_t,

    da = dh * f'(a_t)          f' = 1 - h_t^2 (tanh),  [h_t > 0] (relu)
    dx = da W_ih,   dh_{t-1} = da W_hh,   dW_ih = da^T x_t,   dW_hh = da^T h_{t-1},   db = sum_B da

Shapes: B batch, I input, H hidden, T time.
"""

from __future__ import annotations

import numpy as np

from rnnkit.scratch.ops import sum_rows

NONLINEARITIES = ("tanh", "relu")


def _check_nonlinearity(nonlinearity: str) -> None:
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu'. Expected one of those, got {nonlinearity!r}")


def _act(a: np.ndarray, nonlinearity: str) -> np.ndarray:
    return np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)


def _act_grad(h: np.ndarray, nonlinearity: str) -> np.ndarray:
    """f'(a) written in terms of the output h = f(a), so the cache needs only h."""
    return 1.0 - h * h if nonlinearity == "tanh" else (h > 0).astype(h.dtype)


# ----------------------------------------------------------------------------------------------
# One step: the readable reference a learner steps through.
# ----------------------------------------------------------------------------------------------


def rnn_step(x, h, params, nonlinearity="tanh"):
    """One Elman step. x (B, I), h (B, H), params: weight_ih (H, I), weight_hh (H, H),
    optional bias_ih, bias_hh (H,). Returns (h_new (B, H), cache)."""
    _check_nonlinearity(nonlinearity)
    a = x @ params["weight_ih"].T + h @ params["weight_hh"].T  # (B, H)
    if "bias_ih" in params:
        a = a + params["bias_ih"] + params["bias_hh"]
    h_new = _act(a, nonlinearity)  # (B, H)
    return h_new, (x, h, h_new, params, nonlinearity)


def rnn_step_backward(d_h_new, cache):
    """Backward of :func:`rnn_step`. d_h_new (B, H) -> (d_x (B, I), d_h (B, H), grads)."""
    x, h, h_new, params, nonlinearity = cache
    da = d_h_new * _act_grad(h_new, nonlinearity)  # (B, H)
    grads = {"weight_ih": da.T @ x, "weight_hh": da.T @ h}  # (H, I), (H, H)
    if "bias_ih" in params:
        grads["bias_ih"] = da.sum(0)
        grads["bias_hh"] = da.sum(0)
    return da @ params["weight_ih"], da @ params["weight_hh"], grads


# ----------------------------------------------------------------------------------------------
# The unrolled loop over time, given the input projection of every step.
# The layer computes gx = x W_ih^T + b_ih for all T in one matmul and dW_ih in one matmul after;
# here only the recurrent part runs step by step, into preallocated arrays.
# ----------------------------------------------------------------------------------------------


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
    """Backward of :func:`rnn_recur`.

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
