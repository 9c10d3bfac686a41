"""The Elman cell in NumPy: one step and its backward, the equations the layers run step by step.

Update (torch.nn.RNNCell; f is tanh or relu):

    a_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh        (B, H)
    h_t = f(a_t)                                           (B, H)

Backward (docs/bptt.md, section "Elman"): with dh the total gradient reaching h_t,

    da = dh * f'(a_t)          f' = 1 - h_t^2 (tanh),  [h_t > 0] (relu)
    dx = da W_ih,   dh_{t-1} = da W_hh,   dW_ih = da^T x_t,   dW_hh = da^T h_{t-1},   db = sum_B da

Shapes: B batch, I input, H hidden. ``rnnkit.scratch.RNN`` calls these two functions once per
step; the speed-tuned loop that computes the same numbers is ``rnnkit.scratch.fast.rnn_loop``.
"""

from __future__ import annotations

import numpy as np

from rnnkit.checks import check_choice

NONLINEARITIES = ("tanh", "relu")


def _check_nonlinearity(nonlinearity: str) -> None:
    check_choice("nonlinearity", nonlinearity, NONLINEARITIES)


def _act(a: np.ndarray, nonlinearity: str) -> np.ndarray:
    return np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)


def _act_grad(h: np.ndarray, nonlinearity: str) -> np.ndarray:
    """f'(a) written in terms of the output h = f(a), so the cache needs only h."""
    return 1.0 - h * h if nonlinearity == "tanh" else (h > 0).astype(h.dtype)


def rnn_step(x, h, params, nonlinearity="tanh"):
    """One Elman step: h_new = f(x W_ih^T + b_ih + h W_hh^T + b_hh).

    x (B, I), h (B, H); params: weight_ih (H, I), weight_hh (H, H), optional bias_ih, bias_hh (H,).
    Returns (h_new (B, H), cache).
    """
    _check_nonlinearity(nonlinearity)
    a = x @ params["weight_ih"].T + h @ params["weight_hh"].T  # (B, H)
    if "bias_ih" in params:
        a = a + params["bias_ih"] + params["bias_hh"]
    h_new = _act(a, nonlinearity)  # (B, H)
    return h_new, (x, h, h_new, params, nonlinearity)


def rnn_step_backward(d_h_new, cache):
    """Backward of `rnn_step`: da = dh_new * f'(a); dx = da W_ih, dh = da W_hh.

    d_h_new (B, H) -> (d_x (B, I), d_h (B, H), grads keyed like params: dW = da^T input, db = sum_B da).
    """
    x, h, h_new, params, nonlinearity = cache
    da = d_h_new * _act_grad(h_new, nonlinearity)  # (B, H)
    grads = {"weight_ih": da.T @ x, "weight_hh": da.T @ h}  # (H, I), (H, H)
    if "bias_ih" in params:
        grads["bias_ih"] = da.sum(0)  # (H,)
        grads["bias_hh"] = da.sum(0)  # a is linear in both biases: the same gradient
    return da @ params["weight_ih"], da @ params["weight_hh"], grads
