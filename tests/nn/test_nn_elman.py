"""The Elman network against its equations written out by hand; stepping, lengths, gradcheck."""

from __future__ import annotations

import pytest
import torch
from test_nn_cells import D64, B, H, I, O, T
from torch.autograd import gradcheck

import rnnkit


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


def test_gradcheck_elman_and_recurrent_loop():
    torch.manual_seed(0)
    net = rnnkit.Elman(3, 4, 2, backend="loop", dtype=D64)
    x = torch.randn(5, 2, 3, dtype=D64, requires_grad=True)
    h0 = torch.randn(2, 4, dtype=D64, requires_grad=True)
    assert gradcheck(lambda x, h: net(x, h), (x, h0))
    rec = rnnkit.Recurrent(torch.nn.Linear(3, 4).double(), torch.nn.Linear(4, 4).double(),
                           hidden_size=4)
    assert gradcheck(lambda x, h: rec(x, h), (x, h0))


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
