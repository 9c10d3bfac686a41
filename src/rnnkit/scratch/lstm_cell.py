"""The LSTM cell in NumPy (with optional projection): one step and its backward, as written in papers.

Update (torch.nn.LSTM, gate order i, f, g, o; Hochreiter & Schmidhuber 1997, forget gate of
Gers et al. 2000, projection of Sak et al. 2014):

    [a_i, a_f, a_g, a_o] = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh     (B, 4H)
    i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)                  (B, H) each
    c_t = f * c_{t-1} + i * g                                             (B, H)
    m_t = o * tanh(c_t)                                                   (B, H)
    h_t = m_t W_hr^T   if proj_size > 0,   else h_t = m_t                 (B, P) or (B, H)

Backward (docs/bptt.md, section "LSTM"): with dh, dc the total gradients reaching h_t, c_t,

    dm = dh W_hr (or dh)     dW_hr = dh^T m_t
    dc_tot = dc + dm * o * (1 - tanh(c_t)^2)
    da_i = dc_tot * g * i(1-i)     da_f = dc_tot * c_{t-1} * f(1-f)
    da_g = dc_tot * i * (1-g^2)    da_o = dm * tanh(c_t) * o(1-o)
    dc_{t-1} = dc_tot * f          dh_{t-1} = da W_hh        dx = da W_ih

Shapes: B batch, I input, H hidden, P proj_size. ``rnnkit.scratch.LSTM`` calls these two functions
once per step; the speed-tuned loop that computes the same numbers is ``rnnkit.scratch.fast.lstm_loop``.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(a):
    # σ(a) = 1 / (1 + exp(-a)) = 0.5 * (1 + tanh(a/2)); the tanh form never overflows for large |a|
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def lstm_step(x, state, params):
    """One LSTM step: gates from [x, h], then c_new = f * c + i * g, h_new = (o * tanh(c_new)) W_hr^T.

    x (B, I), state (h (B, P or H), c (B, H)); params: weight_ih (4H, I), weight_hh (4H, P or H),
    optional bias_ih, bias_hh (4H,), optional weight_hr (P, H). Returns ((h_new, c_new), cache).
    """
    h, c = state
    a = x @ params["weight_ih"].T + h @ params["weight_hh"].T  # (B, 4H)
    if "bias_ih" in params:
        a = a + params["bias_ih"] + params["bias_hh"]
    a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)  # (B, H) each
    i, f, g, o = _sigmoid(a_i), _sigmoid(a_f), np.tanh(a_g), _sigmoid(a_o)
    c_new = f * c + i * g  # (B, H)
    tc = np.tanh(c_new)  # (B, H)
    m = o * tc  # (B, H)
    h_new = m @ params["weight_hr"].T if "weight_hr" in params else m  # (B, P) or (B, H)
    cache = (x, h, c, i, f, g, o, tc, m, params)
    return (h_new, c_new), cache


def lstm_step_backward(d_state, cache):
    """Backward of `lstm_step`: dc_tot = dc + dm * o * (1 - tanh(c)^2), then the four gates.

    d_state = (d_h_new (B, P or H), d_c_new (B, H)), either may be None (zero).
    Returns (d_x (B, I), (d_h (B, P or H), d_c (B, H)), grads keyed like params).
    """
    x, h, c, i, f, g, o, tc, m, params = cache
    d_h, d_c = d_state
    d_h = np.zeros((m.shape[0], h.shape[1]), m.dtype) if d_h is None else d_h
    d_c = np.zeros_like(c) if d_c is None else d_c
    grads = {}
    if "weight_hr" in params:
        grads["weight_hr"] = d_h.T @ m  # (P, H)
        dm = d_h @ params["weight_hr"]  # (B, H)
    else:
        dm = d_h
    dc = d_c + dm * o * (1.0 - tc * tc)  # (B, H): through c_t directly and through h_t
    da = np.concatenate(  # (B, 4H), gradients on the pre-activations a_i, a_f, a_g, a_o
        [dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g * g), dm * tc * o * (1 - o)],
        axis=1,
    )
    grads["weight_ih"] = da.T @ x  # (4H, I)
    grads["weight_hh"] = da.T @ h  # (4H, P or H)
    if "bias_ih" in params:
        grads["bias_ih"] = da.sum(0)  # (4H,)
        grads["bias_hh"] = da.sum(0)  # a is linear in both biases: the same gradient
    return da @ params["weight_ih"], (da @ params["weight_hh"], dc * f), grads
