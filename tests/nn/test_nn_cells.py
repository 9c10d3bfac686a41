"""The cells against the update equations written out by hand and against torch.nn's cells."""

from __future__ import annotations

import pytest
import torch

import rnnkit

D64 = torch.float64
B, I, H, O, T = 3, 4, 5, 2, 6


def sig(x):
    return 1 / (1 + torch.exp(-x))


def hand_rnn(x, h, w_ih, w_hh, b_ih, b_hh, act):
    return act(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)


def hand_lstm(x, h, c, w_ih, w_hh, b_ih, b_hh):
    z = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
    c = sig(f) * c + sig(i) * torch.tanh(g)
    return sig(o) * torch.tanh(c), c


def hand_gru(x, h, w_ih, w_hh, b_ih, b_hh):
    a, b = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    r = sig(a[:, :H] + b[:, :H])
    z = sig(a[:, H:2 * H] + b[:, H:2 * H])
    n = torch.tanh(a[:, 2 * H:] + r * b[:, 2 * H:])
    return (1 - z) * n + z * h


@pytest.mark.parametrize("batched", [True, False])
def test_cells_match_hand_formula_and_torch(batched):
    torch.manual_seed(0)
    x = torch.randn(B, I, dtype=D64)
    h, c = torch.randn(B, H, dtype=D64), torch.randn(B, H, dtype=D64)
    sq = (lambda t: t) if batched else (lambda t: t[0])
    for nl, act in (("tanh", torch.tanh), ("relu", torch.relu)):
        cell = rnnkit.RNNCell(I, H, nonlinearity=nl, dtype=D64)
        p = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
        torch.testing.assert_close(cell(sq(x), sq(h)), sq(hand_rnn(x, h, *p, act)), rtol=1e-12, atol=1e-12)
        ref = torch.nn.RNNCell(I, H, nonlinearity=nl, dtype=D64)
        ref.load_state_dict(cell.state_dict())
        torch.testing.assert_close(cell(sq(x)), ref(sq(x)), rtol=1e-12, atol=1e-12)
    cell = rnnkit.LSTMCell(I, H, dtype=D64)
    p = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
    got = cell(sq(x), (sq(h), sq(c)))
    want = hand_lstm(x, h, c, *p)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, sq(b), rtol=1e-12, atol=1e-12)
    ref = torch.nn.LSTMCell(I, H, dtype=D64)
    ref.load_state_dict(cell.state_dict())
    for a, b in zip(cell(sq(x)), ref(sq(x))):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    cell = rnnkit.GRUCell(I, H, dtype=D64)
    p = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
    torch.testing.assert_close(cell(sq(x), sq(h)), sq(hand_gru(x, h, *p)), rtol=1e-12, atol=1e-12)
    ref = torch.nn.GRUCell(I, H, dtype=D64)
    ref.load_state_dict(cell.state_dict())
    torch.testing.assert_close(cell(sq(x), sq(h)), ref(sq(x), sq(h)), rtol=1e-12, atol=1e-12)


def test_cells_without_bias_and_same_init_as_torch():
    for ours, theirs in ((rnnkit.RNNCell, torch.nn.RNNCell), (rnnkit.LSTMCell, torch.nn.LSTMCell),
                         (rnnkit.GRUCell, torch.nn.GRUCell)):
        torch.manual_seed(1)
        a = ours(I, H, bias=False)
        torch.manual_seed(1)
        b = theirs(I, H, bias=False)
        assert list(a.state_dict()) == list(b.state_dict())
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
