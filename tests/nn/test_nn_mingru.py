"""MinGRU / MinLSTM: the parallel scans against the sequential loop, stepping, float64 truth,
gradcheck, and the paper's equations written out independently."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import rnnkit
from rnnkit.nn.mingru import MinGRU, MinLSTM, blocked_scan, linear_scan, log_scan

DT = torch.float64


def python_scan(a, b, h0=None):
    h = torch.zeros_like(b[0]) if h0 is None else h0
    out = []
    for a_t, b_t in zip(a, b):
        h = a_t * h + b_t
        out.append(h)
    return torch.stack(out)


@pytest.mark.parametrize("T", [1, 2, 3, 10, 17, 64, 65, 200])
def test_blocked_scan_equals_the_loop(T):
    gen = torch.Generator().manual_seed(T)
    a = torch.rand(T, 2, 3, generator=gen, dtype=DT)
    b = torch.randn(T, 2, 3, generator=gen, dtype=DT)
    torch.testing.assert_close(blocked_scan(a, b), python_scan(a, b), rtol=1e-12, atol=1e-12)
    rev = python_scan(a.flip(0), b.flip(0)).flip(0)
    torch.testing.assert_close(blocked_scan(a, b, reverse=True), rev, rtol=1e-12, atol=1e-12)
    lb = torch.rand(T, 2, 3, generator=gen, dtype=DT).log()  # log space needs b > 0
    torch.testing.assert_close(log_scan(a.log(), lb, chunk=4).exp(), python_scan(a, lb.exp()),
                               rtol=1e-10, atol=1e-12)


def test_scan_gradcheck_with_initial_state():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(11, 2, 3, generator=gen, dtype=DT).requires_grad_()
    b = torch.randn(11, 2, 3, generator=gen, dtype=DT).requires_grad_()
    h0 = torch.randn(2, 3, generator=gen, dtype=DT).requires_grad_()
    assert torch.autograd.gradcheck(linear_scan, (a, b, h0))
    assert torch.autograd.gradcheck(lambda a, b: linear_scan(a, b), (a, b))


def oracle_min_gru(m, x, h):
    """The paper's sequential minGRU, written out: z = σ(W_z x), h̃ = g(W_h x)."""
    z_lin, h_lin = F.linear(x, m.weight_ih_l0, m.bias_ih_l0).chunk(2, -1)
    out = []
    for k_t, v_t in zip(z_lin, h_lin):
        z = torch.sigmoid(k_t)
        h_tilde = torch.where(v_t >= 0, v_t + 0.5, torch.sigmoid(v_t))
        h = (1 - z) * h + z * h_tilde
        out.append(h)
    return torch.stack(out)


def oracle_min_lstm(m, x, h):
    kf, ki, v = F.linear(x, m.weight_ih_l0, m.bias_ih_l0).chunk(3, -1)
    out = []
    for kf_t, ki_t, v_t in zip(kf, ki, v):
        f, i = torch.sigmoid(kf_t), torch.sigmoid(ki_t)
        h_tilde = torch.where(v_t >= 0, v_t + 0.5, torch.sigmoid(v_t))
        h = f / (f + i) * h + i / (f + i) * h_tilde
        out.append(h)
    return torch.stack(out)


@pytest.mark.parametrize("scan_kind", ["blocked", "log"])
@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_matches_the_paper_equations(cls, scan_kind):
    torch.manual_seed(1)
    m = cls(3, 5, dtype=DT, scan=scan_kind)
    x = 2 * torch.randn(40, 2, 3, dtype=DT)
    h0 = torch.randn(1, 2, 5, dtype=DT)  # any sign: the initial state enters linearly
    oracle = oracle_min_gru if cls is MinGRU else oracle_min_lstm
    ref = oracle(m, x, h0[0])
    out, h_n = m(x, h0)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h_n[0], ref[-1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("scan_kind", ["blocked", "log"])
@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_gradcheck_two_layers(cls, scan_kind):
    torch.manual_seed(2)
    m = cls(3, 2, num_layers=2, dtype=DT, scan=scan_kind)
    x = torch.randn(9, 2, 3, dtype=DT, requires_grad=True)
    h0 = torch.randn(2, 2, 2, dtype=DT, requires_grad=True)
    names = [n for n, _ in m.named_parameters()]

    def f(x, h0, *ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (x, h0))

    assert torch.autograd.gradcheck(f, (x, h0, *m.parameters()), fast_mode=True)


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_stepping_equals_one_call(cls):
    """Streaming: T=1 calls carrying h_n give the numbers of one call on the whole sequence."""
    torch.manual_seed(3)
    m = cls(4, 6, num_layers=2, batch_first=True)
    x = torch.randn(2, 30, 4)
    out, h_n = m(x)
    h, steps = None, []
    for t in range(30):
        y, h = m(x[:, t : t + 1], h)
        steps.append(y)
    torch.testing.assert_close(torch.cat(steps, 1), out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, h_n, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_long_float32_scan_is_as_accurate_as_the_loop(cls):
    """T = 4096 in float32: the blocked scan stays within a few ulps of the float64 truth, like
    the sequential loop; no error growth with T."""
    torch.manual_seed(4)
    m64 = cls(2, 8, dtype=DT)
    x = 3 * torch.randn(4096, 2, 2, dtype=DT)
    truth, _ = m64.forward_sequential(x)
    m32 = cls(2, 8)
    m32.load_state_dict(m64.state_dict())
    scanned, _ = m32(x.float())
    looped, _ = m32.forward_sequential(x.float())
    err_scan = ((scanned.double() - truth).abs() / truth.abs()).max()
    err_loop = ((looped.double() - truth).abs() / truth.abs()).max()
    assert err_scan < 2e-6 and err_scan < 4 * err_loop + 1e-7


def test_shapes_unbatched_and_names():
    m = MinGRU(3, 5, num_layers=2)
    out, h = m(torch.randn(7, 3))
    assert out.shape == (7, 5) and h.shape == (2, 5)
    out, h = m(torch.randn(7, 3), torch.zeros(2, 5))
    assert out.shape == (7, 5)
    assert [n for n, _ in m.named_parameters()] == [
        "weight_ih_l0", "bias_ih_l0", "weight_ih_l1", "bias_ih_l1"]
    assert m.weight_ih_l1.shape == (10, 5) and MinLSTM(3, 5).weight_ih_l0.shape == (15, 3)
    assert rnnkit.MinGRU is MinGRU and rnnkit.MinLSTM is MinLSTM


def test_errors_say_what_was_expected():
    m = MinGRU(3, 5)
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size. Expected 3, got 4"):
        m(torch.randn(7, 2, 4))
    with pytest.raises(RuntimeError, match=r"Expected h0 size \(1, 2, 5\), got \[2, 5\]"):
        m(torch.randn(7, 2, 3), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"Expected input to be 2D or 3D, got 4D instead \(2D: \(T, I\), 3D: \(T, B, I\)\)"):
        m(torch.randn(7, 2, 3, 1))
    with pytest.raises(ValueError, match="scan must be one of"):
        MinGRU(3, 5, scan="cumsum")
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        MinLSTM(3, 0)
