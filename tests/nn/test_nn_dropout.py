"""Recurrent dropout: identity (or the expectation) in eval, the right mean in training, the mask
structure each method promises, and the fast path equal to the readable loop under the same masks.

The expectation checks use a ReLU Elman layer kept in its linear regime (all pre-activations
positive), where the output of one step is linear in the dropped quantity, so the Monte Carlo mean
over many sequences must approach the undropped value.
"""

from __future__ import annotations

import pytest
import torch

from rnnkit.nn.dropout import LockedDropout, drop_connect, variational_mask, zoneout_keep
from rnnkit.nn.fused import FusedGRU, FusedLSTM, FusedRNN
from rnnkit.nn.layernorm import LayerNormLSTM

I, H = 3, 4
DT = torch.float64
ALL = {"recurrent_dropout": 0.3, "zoneout": 0.2, "weight_dropout": 0.4}


def linear_regime_rnn(**kw):
    """ReLU RNN with positive weights and a big positive bias: relu acts as the identity."""
    torch.manual_seed(0)
    m = FusedRNN(I, H, nonlinearity="relu", dtype=DT, **kw)
    with torch.no_grad():
        m.weight_hh_l0.uniform_(0.1, 0.5)
        m.weight_ih_l0.uniform_(0.1, 0.5)
        m.bias_ih_l0.fill_(5.0)
    return m


@pytest.mark.parametrize("cls", [FusedRNN, FusedLSTM, FusedGRU, LayerNormLSTM])
@pytest.mark.parametrize("kw", [{"recurrent_dropout": 0.5}, {"weight_dropout": 0.5}],
                         ids=["variational", "dropconnect"])
def test_identity_in_eval(cls, kw):
    torch.manual_seed(1)
    plain = cls(I, H, num_layers=2, dtype=DT).eval()
    dropped = cls(I, H, num_layers=2, dtype=DT, **kw).eval()
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(6, 2, I, dtype=DT)
    torch.testing.assert_close(dropped(x)[0], plain(x)[0], rtol=0, atol=0)
    dropped.train()
    assert not torch.allclose(dropped(x)[0], plain(x)[0])  # and it does drop in training


def test_zoneout_eval_is_the_expected_update():
    """Eval: s_t = s_{t-1} + (1-p)(s'_t - s_{t-1}), deterministic, for h and for c separately."""
    torch.manual_seed(2)
    p_h, p_c = 0.25, 0.5
    m = FusedLSTM(I, H, zoneout=(p_h, p_c), dtype=DT).eval()
    x = torch.randn(1, 5, I, dtype=DT)
    h0, c0 = torch.randn(1, 5, H, dtype=DT), torch.randn(1, 5, H, dtype=DT)
    _, (h1, c1) = m(x, (h0, c0))
    plain = FusedLSTM(I, H, dtype=DT)
    plain.load_state_dict(m.state_dict())
    _, (h_new, c_new) = plain(x, (h0, c0))
    torch.testing.assert_close(h1, h0 + (1 - p_h) * (h_new - h0))
    torch.testing.assert_close(c1, c0 + (1 - p_c) * (c_new - c0))
    torch.testing.assert_close(m(x, (h0, c0))[1][0], h1, rtol=0, atol=0)


@pytest.mark.parametrize("kw", [{"recurrent_dropout": 0.4}, {"zoneout": 0.4}],
                         ids=["variational", "zoneout"])
def test_training_mean_matches_eval(kw):
    """One step over 20000 copies of a sequence: the mean of the training outputs is the eval one."""
    m = linear_regime_rnn(**kw)
    n = 20000
    x = torch.rand(1, 1, I, dtype=DT).expand(1, n, I)
    h0 = torch.rand(1, 1, H, dtype=DT).expand(1, n, H).contiguous()
    m.train()
    torch.manual_seed(3)
    samples = m(x, h0)[0][0]  # (n, H)
    assert (samples > 0).all()  # linear regime: relu never clips
    m.eval()
    expected = m(x[:, :1], h0[:, :1])[0][0, 0]
    stderr = samples.std(0) / n**0.5
    assert ((samples.mean(0) - expected).abs() < 5 * stderr).all()
    assert (stderr < 0.01 * expected.abs()).all()  # and the test has the power to see a bias


def test_dropconnect_mean_and_one_mask_per_call():
    torch.manual_seed(4)
    w = torch.rand(50, 40, dtype=DT) + 0.5
    draws = torch.stack([drop_connect(w, 0.3, True) for _ in range(400)])
    torch.testing.assert_close(draws.mean(0).mean(), w.mean(), rtol=0.01, atol=0)
    zeros = (draws[0] == 0).to(DT).mean()
    assert 0.25 < zeros < 0.35  # about p of the weights dropped
    assert drop_connect(w, 0.3, False) is w
    # the layer: every sequence of the batch sees the same dropped W_hh. Two identical sequences
    # in one batch give identical outputs (variational dropout would give different ones).
    m = linear_regime_rnn(weight_dropout=0.5).train()
    x = torch.rand(4, 1, I, dtype=DT).expand(4, 2, I)
    out = m(x)[0]
    torch.testing.assert_close(out[:, 0], out[:, 1], rtol=0, atol=0)
    v = linear_regime_rnn(recurrent_dropout=0.5).train()
    torch.manual_seed(5)
    out = v(torch.rand(4, 1, I, dtype=DT).expand(4, 16, I))[0]
    assert not torch.equal(out[:, 0:1].expand_as(out), out)


def test_mask_shapes_and_scaling():
    like = torch.zeros((), dtype=DT)
    torch.manual_seed(6)
    m = variational_mask(3, 5, 0.25, like)
    assert m.shape == (3, 5) and set(m.unique().tolist()) <= {0.0, 1 / 0.75}
    k = zoneout_keep(7, 3, 5, 0.25, True, like)
    assert k.shape == (7, 3, 5) and set(k.unique().tolist()) <= {0.0, 1.0}
    e = zoneout_keep(7, 3, 5, 0.25, False, like)
    assert e.shape == (7, 1, 1) and torch.all(e == 0.75)


def test_locked_dropout_one_mask_over_time():
    torch.manual_seed(7)
    drop = LockedDropout(0.5)
    x = torch.ones(10, 4, 6)
    y = drop(x)
    assert torch.equal(y, y[:1].expand_as(y))  # the same mask at every step
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    yb = LockedDropout(0.5, batch_first=True)(x)
    assert torch.equal(yb, yb[:, :1].expand_as(yb))
    assert drop.eval()(x) is x
    big = LockedDropout(0.3).train()(torch.ones(1, 20000, 5))
    torch.testing.assert_close(big.mean(), torch.tensor(1.0), rtol=0.02, atol=0)
    with pytest.raises(ValueError, match="3-D"):
        drop.train()(torch.ones(3, 4))


@pytest.mark.parametrize("cls", [FusedLSTM, FusedGRU, LayerNormLSTM])
def test_fast_equals_loop_with_all_dropouts(cls, eager_or_compiled):
    """Same seed, same masks: the fast path and the readable loop agree in training mode."""
    torch.manual_seed(8)
    fused = cls(I, H, num_layers=2, bidirectional=True, dtype=DT, **ALL).train()
    loop = cls(I, H, num_layers=2, bidirectional=True, dtype=DT, backend="loop", **ALL).train()
    loop.load_state_dict(fused.state_dict())
    x = torch.randn(5, 3, I, dtype=DT, requires_grad=True)
    lengths = torch.tensor([5, 2, 3])
    torch.manual_seed(9)
    out, _ = fused(x, lengths=lengths)
    torch.manual_seed(9)
    out_l, _ = loop(x, lengths=lengths)
    torch.testing.assert_close(out, out_l, rtol=1e-10, atol=1e-10)
    g = torch.autograd.grad(out.pow(2).sum(), [x, *fused.parameters()])
    g_l = torch.autograd.grad(out_l.pow(2).sum(), [x, *loop.parameters()])
    for a, b in zip(g, g_l):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.5", True])
def test_bad_probabilities(bad):
    with pytest.raises(ValueError, match="must be a probability in"):
        FusedGRU(I, H, zoneout=bad)
    with pytest.raises(ValueError, match="must be a probability in"):
        LockedDropout(bad)
