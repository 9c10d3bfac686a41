"""Cells, Elman and Recurrent against the update equations written out by hand; stepping; gradcheck."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

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


@pytest.mark.parametrize("backend", ["native", "loop"])
@pytest.mark.parametrize("nl", ["tanh", "relu"])
def test_elman_matches_hand_formula(backend, nl):
    torch.manual_seed(0)
    net = rnnkit.Elman(I, H, O, nonlinearity=nl, backend=backend, dtype=D64)
    x = torch.randn(T, B, I, dtype=D64)
    h0 = torch.randn(B, H, dtype=D64)
    act = torch.tanh if nl == "tanh" else torch.relu
    h, ys = h0, []
    for t in range(T):
        h = act(x[t] @ net.weight_ih.T + net.bias_ih + h @ net.weight_hh.T + net.bias_hh)
        ys.append(h @ net.weight_ho.T + net.bias_ho)
    y, h_n = net(x, h0)
    torch.testing.assert_close(y, torch.stack(ys), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_n, h, rtol=1e-12, atol=1e-12)
    # unbatched and batch_first give the same numbers
    y1, h1 = net(x[:, 0], h0[0])
    torch.testing.assert_close(y1, y[:, 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h1, h_n[0], rtol=1e-12, atol=1e-12)
    net.batch_first = True
    y2, _ = net(x.transpose(0, 1), h0)
    torch.testing.assert_close(y2, y.transpose(0, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["native", "loop"])
def test_elman_stepping_equals_whole_sequence(backend):
    torch.manual_seed(0)
    net = rnnkit.Elman(I, H, O, backend=backend, dtype=D64)
    x = torch.randn(T, B, I, dtype=D64)
    y, h_n = net(x)
    h, ys = None, []
    for t in range(T):
        y_t, h = net.step(x[t], h)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys), y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, h_n, rtol=1e-12, atol=1e-12)
    # chunks of 2 steps, carrying h_n
    h, chunks = None, []
    for t in range(0, T, 2):
        y_c, h = net(x[t:t + 2], h)
        chunks.append(y_c)
    torch.testing.assert_close(torch.cat(chunks), y, rtol=1e-12, atol=1e-12)


def test_elman_init_states_and_names():
    net = rnnkit.Elman(I, H, O, init_state="learned")
    assert [n for n, _ in net.named_parameters()] == [
        "weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ho", "bias_ho", "h0"]
    x = torch.randn(T, B, I)
    net(x)[0].sum().backward()
    assert net.h0.grad is not None and net.h0.grad.abs().sum() > 0
    rnd = rnnkit.Elman(I, H, O, init_state="random")
    assert not torch.allclose(rnd(x)[0], rnd(x)[0])
    rnd.eval()
    torch.testing.assert_close(rnd(x)[0], rnd(x, torch.zeros(B, H))[0])


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


@pytest.mark.parametrize("cls", [rnnkit.RNN, rnnkit.GRU, rnnkit.LSTM])
def test_layer_stepping_equals_whole_sequence(cls):
    torch.manual_seed(0)
    m = cls(I, H, num_layers=2, batch_first=True, dtype=D64)
    x = torch.randn(B, T, I, dtype=D64)
    out, state = m(x)
    s, ys = None, []
    for t in range(T):
        y, s = m.step(x[:, t], s)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), out, rtol=1e-12, atol=1e-12)
    for a, b in zip(s if isinstance(s, tuple) else (s,), state if isinstance(state, tuple) else (state,)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    y1, _ = m.step(x[0, 0])  # unbatched step
    assert y1.shape == (H,)


@pytest.mark.parametrize("cls,extra", [(rnnkit.RNN, {}), (rnnkit.GRU, {}), (rnnkit.LSTM, {}),
                                       (rnnkit.LSTM, {"proj_size": 2})])
def test_gradcheck_loop_path(cls, extra):
    torch.manual_seed(0)
    m = cls(3, 4, num_layers=2, bidirectional=True, backend="loop", dtype=D64, **extra)
    params = list(m.parameters())
    names = [n for n, _ in m.named_parameters()]
    x = torch.randn(4, 2, 3, dtype=D64, requires_grad=True)
    lengths = torch.tensor([4, 2])

    def f(x, *ps):
        out, st = torch.func.functional_call(m, dict(zip(names, ps)), (x,), {"lengths": lengths})
        st = st if isinstance(st, tuple) else (st,)
        return (out,) + st

    assert gradcheck(f, (x, *[p.detach().requires_grad_() for p in params]), eps=1e-6, atol=1e-6, fast_mode=True)


def test_gradcheck_elman_and_recurrent_loop():
    torch.manual_seed(0)
    net = rnnkit.Elman(3, 4, 2, backend="loop", dtype=D64)
    x = torch.randn(5, 2, 3, dtype=D64, requires_grad=True)
    h0 = torch.randn(2, 4, dtype=D64, requires_grad=True)
    assert gradcheck(lambda x, h: net(x, h), (x, h0))
    rec = rnnkit.Recurrent(torch.nn.Linear(3, 4).double(), torch.nn.Linear(4, 4).double(),
                           hidden_size=4)
    assert gradcheck(lambda x, h: rec(x, h), (x, h0))


def test_loop_backward_is_linear_in_T():
    """The loop splits the input projection with unbind, never by per-step indexing."""
    m = rnnkit.LSTM(I, H, backend="loop")
    out, _ = m(torch.randn(T, B, I, requires_grad=True))
    seen, stack = set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack += [f for f, _ in fn.next_functions]
    kinds = {type(fn).__name__ for fn in seen}
    assert "UnbindBackward0" in kinds
    assert "SelectBackward0" not in kinds


@pytest.mark.parametrize("backend", ["native", "loop"])
def test_elman_lengths_equal_each_sequence_alone(backend):
    torch.manual_seed(0)
    net = rnnkit.Elman(I, H, O, backend=backend, dtype=D64)
    x = torch.randn(T, B, I, dtype=D64)
    lengths = torch.tensor([T, 2, 4])
    y, h_n = net(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        y_b, h_b = net(x[:n, b])
        torch.testing.assert_close(y[:n, b], y_b, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(h_n[b], h_b, rtol=1e-12, atol=1e-12)
        assert torch.all(y[n:, b] == 0)
