"""LayerNormLSTM / LayerNormGRU: the fast path against an independent cell written with
torch.nn.functional.layer_norm, against the readable loop (backend="loop") in every layout, and
float64 gradcheck of the whole layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from layer_helpers import perturbed as perturbed_layer
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.nn.layernorm import LayerNormGRU, LayerNormLSTM

T, B, I, H = 5, 3, 4, 6
DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}


def perturbed(cls, **kw):
    """A layer (I, H, float64, seed 0) whose gains and shifts are not the trivial 1 and 0."""
    return perturbed_layer(cls, I, H, DT, 0, **kw)


def oracle_lstm(m, x, h, c):
    """Ba et al. 2016 LN-LSTM written out with F.layer_norm, one step at a time, layer 0."""
    outs = []
    for x_t in x:
        gates = (
            F.layer_norm(x_t @ m.weight_ih_l0.t(), (4 * H,), m.ln_ih_weight_l0)
            + F.layer_norm(h @ m.weight_hh_l0.t(), (4 * H,), m.ln_hh_weight_l0)
            + m.bias_ih_l0 + m.bias_hh_l0
        )
        i, f, g, o = gates.sigmoid().chunk(4, 1)
        g = gates[:, 2 * H : 3 * H].tanh()
        c = f * c + i * g
        h = o * F.layer_norm(c, (H,), m.ln_cell_weight_l0, m.ln_cell_bias_l0).tanh()
        outs.append(h)
    return torch.stack(outs), h, c


def oracle_gru(m, x, h):
    outs = []
    for x_t in x:
        gi = F.layer_norm(x_t @ m.weight_ih_l0.t(), (3 * H,), m.ln_ih_weight_l0) + m.bias_ih_l0
        gh = F.layer_norm(h @ m.weight_hh_l0.t(), (3 * H,), m.ln_hh_weight_l0) + m.bias_hh_l0
        r = (gi[:, :H] + gh[:, :H]).sigmoid()
        z = (gi[:, H : 2 * H] + gh[:, H : 2 * H]).sigmoid()
        n = (gi[:, 2 * H :] + r * gh[:, 2 * H :]).tanh()
        h = (1 - z) * n + z * h
        outs.append(h)
    return torch.stack(outs), h


@pytest.mark.parametrize("cls", [LayerNormLSTM, LayerNormGRU])
def test_matches_the_paper_equations(cls):
    m = perturbed(cls)
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    h0 = torch.randn(1, B, H, dtype=DT)
    if cls is LayerNormLSTM:
        c0 = torch.randn(1, B, H, dtype=DT)
        out, (h_n, c_n) = m(x, (h0, c0))
        ref_out, ref_h, ref_c = oracle_lstm(m, x, h0[0], c0[0])
        torch.testing.assert_close(c_n[0], ref_c, **TOL)
    else:
        out, h_n = m(x, h0)
        ref_out, ref_h = oracle_gru(m, x, h0[0])
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(h_n[0], ref_h, **TOL)
    g = torch.autograd.grad(out.pow(2).sum(), [x, *m.parameters()])
    g_ref = torch.autograd.grad(ref_out.pow(2).sum(), [x, *m.parameters()], allow_unused=True)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, **TOL)


LAYOUTS = [
    {"num_layers": 2, "bidirectional": True, "batch_first": True},
    {"num_layers": 1, "bias": False},
    {"num_layers": 2, "dropout": 0.3},  # inter-layer dropout, checked in eval mode
]


@pytest.mark.parametrize("cls", [LayerNormLSTM, LayerNormGRU])
@pytest.mark.parametrize("layout", LAYOUTS, ids=["bidir2", "nobias", "dropout"])
def test_fast_equals_readable_loop(cls, layout, eager_or_compiled):
    fused = perturbed(cls, **layout).eval()
    loop = cls(I, H, dtype=DT, backend="loop", **layout).eval()
    loop.load_state_dict(fused.state_dict())
    shape = (B, T, I) if layout.get("batch_first") else (T, B, I)
    x = torch.randn(*shape, dtype=DT, requires_grad=True)
    lengths = torch.tensor([T, 1, 3])
    out, st = fused(x, lengths=lengths)
    out_l, st_l = loop(x, lengths=lengths)
    torch.testing.assert_close(out, out_l, **TOL)
    st, st_l = (st, st_l) if isinstance(st, tuple) else ((st,), (st_l,))
    for a, b in zip(st, st_l):
        torch.testing.assert_close(a, b, **TOL)
    loss = out.pow(2).sum() + sum(s.sum() for s in st)
    loss_l = out_l.pow(2).sum() + sum(s.sum() for s in st_l)
    g = torch.autograd.grad(loss, [x, *fused.parameters()])
    g_l = torch.autograd.grad(loss_l, [x, *loop.parameters()])
    for a, b in zip(g, g_l):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_packed_sequence_equals_lengths(eager_or_compiled):
    m = perturbed(LayerNormGRU, bidirectional=True)
    x = torch.randn(T, B, I, dtype=DT)
    lengths = torch.tensor([2, T, 4])
    out_p, h_p = m(pack_padded_sequence(x, lengths, enforce_sorted=False))
    out_p, _ = pad_packed_sequence(out_p, total_length=T)
    out_l, h_l = m(x, lengths=lengths)
    torch.testing.assert_close(out_p, out_l, **TOL)
    torch.testing.assert_close(h_p, h_l, **TOL)


@pytest.mark.parametrize("cls", [LayerNormLSTM, LayerNormGRU])
def test_gradcheck_whole_layer(cls, eager_or_compiled):
    torch.manual_seed(4)
    m = cls(3, 2, bidirectional=True, dtype=DT)
    x = torch.randn(4, 2, 3, dtype=DT, requires_grad=True)
    params = list(m.parameters())
    names = [n for n, _ in m.named_parameters()]

    def f(x, *ps):
        out, st = torch.func.functional_call(m, dict(zip(names, ps)), (x,),
                                             {"lengths": torch.tensor([4, 2])})
        return (out, *(st if isinstance(st, tuple) else (st,)))

    assert torch.autograd.gradcheck(f, (x, *params), fast_mode=True)


def test_proj_size_runs_through_the_loop():
    m = perturbed(LayerNormLSTM, proj_size=2)
    x = torch.randn(T, B, I, dtype=DT)
    out, (h, c) = m(x)
    assert out.shape == (T, B, 2) and h.shape == (1, B, 2) and c.shape == (1, B, H)
    # the projection is the last op: out = (o ⊙ tanh(LN(c))) W_hr^T, checked on the first step
    h0 = torch.zeros(B, 2, dtype=DT)
    gates = (F.layer_norm(x[0] @ m.weight_ih_l0.t(), (4 * H,), m.ln_ih_weight_l0)
             + F.layer_norm(h0 @ m.weight_hh_l0.t(), (4 * H,), m.ln_hh_weight_l0)
             + m.bias_ih_l0 + m.bias_hh_l0)
    i, f, g, o = gates.chunk(4, 1)
    c1 = i.sigmoid() * g.tanh()
    m1 = o.sigmoid() * F.layer_norm(c1, (H,), m.ln_cell_weight_l0, m.ln_cell_bias_l0).tanh()
    torch.testing.assert_close(out[0], m1 @ m.weight_hr_l0.t(), **TOL)


def test_parameters_and_public_names():
    m = LayerNormLSTM(I, H, num_layers=2, bidirectional=True)
    names = dict(m.named_parameters())
    torch_names = set(dict(torch.nn.LSTM(I, H, num_layers=2, bidirectional=True)
                           .named_parameters()))
    assert torch_names <= set(names)  # torch.nn's weights load unchanged (strict=False)
    assert {"ln_ih_weight_l1_reverse", "ln_hh_weight_l0", "ln_cell_bias_l1"} <= set(names)
    assert torch.equal(names["ln_cell_weight_l0"], torch.ones(H))
    assert torch.equal(names["ln_cell_bias_l0"], torch.zeros(H))
    assert rnnkit.LayerNormLSTM is LayerNormLSTM and isinstance(m, rnnkit.LSTM)
    assert isinstance(LayerNormGRU(I, H), rnnkit.GRU)
    # reset_parameters restores the gains
    with torch.no_grad():
        m.ln_hh_weight_l0.fill_(3.0)
    m.reset_parameters()
    assert torch.equal(m.ln_hh_weight_l0, torch.ones(4 * H))


def test_bad_input_errors():
    m = LayerNormLSTM(I, H)
    with pytest.raises(RuntimeError, match="Expected 4, got 5"):
        m(torch.randn(T, B, 5))
    with pytest.raises(ValueError, match="zoneout"):
        LayerNormLSTM(I, H, zoneout=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match=r"recurrent_dropout must be a probability in \[0, 1\)"):
        LayerNormGRU(I, H, recurrent_dropout=1.0)
