"""The general recurrence against its equations written out by hand and against Elman."""

from __future__ import annotations

import torch
from test_nn_cells import D64, B, H, I, O, T

import rnnkit


def test_recurrent_general_maps_match_hand_formula():
    """Nonlinear v, q and u: the recurrence is computed exactly as written."""
    torch.manual_seed(0)
    v = torch.nn.Sequential(torch.nn.Linear(I, H), torch.nn.Tanh()).double()
    q = torch.nn.Linear(H, H, bias=False).double()
    u = torch.nn.Sequential(torch.nn.Linear(H, 7), torch.nn.ReLU()).double()
    rec = rnnkit.Recurrent(v, q, u, hidden_size=H, activation=torch.sigmoid)
    assert {n.split(".")[0] for n, _ in rec.named_parameters()} == {"v", "q", "u"}
    x = torch.randn(T, B, I, dtype=D64)
    h0 = torch.randn(B, H, dtype=D64)
    h, ys = h0, []
    for t in range(T):
        h = torch.sigmoid(v(x[t]) + q(h))
        ys.append(u(h))
    y, h_n = rec(x, h0)
    torch.testing.assert_close(y, torch.stack(ys), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_n, h, rtol=1e-12, atol=1e-12)
    # stepping equals the whole sequence
    hs, outs = h0, []
    for t in range(T):
        y_t, hs = rec.step(x[t], hs)
        outs.append(y_t)
    torch.testing.assert_close(torch.stack(outs), y, rtol=1e-12, atol=1e-12)


def test_recurrent_calls_v_once_over_all_steps():
    calls = []

    def v(x):
        calls.append(tuple(x.shape))
        return x.repeat(1, 1, 2)

    rec = rnnkit.Recurrent(v, lambda h: 0.5 * h, hidden_size=4)
    y, h = rec(torch.randn(T, B, 2))
    assert calls == [(T, B, 2)]
    assert y.shape == (T, B, 4) and h.shape == (B, 4)


def test_recurrent_plain_callables_equal_elman():
    """With affine v, q, u and tanh, Recurrent is the Elman network."""
    torch.manual_seed(0)
    net = rnnkit.Elman(I, H, O, dtype=D64)
    rec = rnnkit.Recurrent(
        lambda x: x @ net.weight_ih.T + net.bias_ih,
        lambda h: h @ net.weight_hh.T + net.bias_hh,
        lambda h: h @ net.weight_ho.T + net.bias_ho,
        hidden_size=H,
    )
    x = torch.randn(T, B, I, dtype=D64)
    for a, b in zip(rec(x, rec.initial_state(B, like=x)), net(x)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    rec_learned = rnnkit.Recurrent(torch.nn.Linear(I, H), torch.nn.Linear(H, H), hidden_size=H,
                                   init_state="learned")
    assert rec_learned.initial_state(2).shape == (2, H)
    assert rec_learned.initial_state().shape == (H,)
