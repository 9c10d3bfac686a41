"""FusedRNN / FusedLSTM / FusedGRU (rnnkit's layers on the fast path) against torch.nn and rnnkit.scratch.

Same state dict, same inputs (padded with lengths, packed, batch_first, bidirectional, two layers,
given hx): outputs, final states and all gradients must agree with torch.nn (autograd over its
own kernels) and with the NumPy engine's hand-written BPTT.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.nn.fused import FusedGRU, FusedLSTM, FusedRNN

T, B, I, H = 5, 3, 4, 6
DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}

PAIRS = [
    ("rnn_tanh", FusedRNN, torch.nn.RNN, {}),
    ("rnn_relu", FusedRNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    ("lstm", FusedLSTM, torch.nn.LSTM, {}),
    ("gru", FusedGRU, torch.nn.GRU, {}),
    ("gru_nobias", FusedGRU, torch.nn.GRU, {"bias": False}),
]


def make_pair(ours_cls, torch_cls, extra, **kw):
    torch.manual_seed(0)
    ref = torch_cls(I, H, dtype=DT, **extra, **kw)
    ours = ours_cls(I, H, dtype=DT, **extra, **kw)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def total(out, state):
    return out.pow(2).sum() + sum((s * (k + 1)).sum() for k, s in enumerate(as_tuple(state)))


@pytest.mark.parametrize("pair", PAIRS, ids=[p[0] for p in PAIRS])
def test_equals_torch_nn_with_lengths(pair, eager_or_compiled):
    _, ours_cls, torch_cls, extra = pair
    ours, ref = make_pair(ours_cls, torch_cls, extra, num_layers=2, bidirectional=True,
                          batch_first=True)
    x = torch.randn(B, T, I, dtype=DT, requires_grad=True)
    lengths = torch.tensor([T, 2, 4])
    n_state = 2 if ours.mode == "LSTM" else 1
    hx = tuple(torch.randn(4, B, H, dtype=DT, requires_grad=True) for _ in range(n_state))
    hx_arg = hx if n_state == 2 else hx[0]
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out_ref, st_ref = ref(packed, hx_arg)
    out_ref, _ = pad_packed_sequence(out_ref, batch_first=True, total_length=T)
    out, st = ours(x, hx_arg, lengths=lengths)
    torch.testing.assert_close(out, out_ref, **TOL)
    for a, b in zip(as_tuple(st), as_tuple(st_ref)):
        torch.testing.assert_close(a, b, **TOL)
    inputs = [x, *hx]
    g = torch.autograd.grad(total(out, st), inputs + list(ours.parameters()))
    g_ref = torch.autograd.grad(total(out_ref, st_ref), inputs + list(ref.parameters()))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("pair", PAIRS[2:4], ids=["lstm", "gru"])
def test_packed_input_and_float32(pair, eager_or_compiled):
    _, ours_cls, torch_cls, extra = pair
    torch.manual_seed(1)
    ref = torch_cls(I, H, num_layers=2)
    ours = ours_cls(I, H, num_layers=2)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)
    packed = pack_padded_sequence(x, torch.tensor([3, T, 1]), enforce_sorted=False)
    out, st = ours(packed)
    out_ref, st_ref = ref(packed)
    assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
    torch.testing.assert_close(out.data, out_ref.data)
    for a, b in zip(as_tuple(st), as_tuple(st_ref)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_equals_scratch_bptt(kind, eager_or_compiled):
    """The NumPy engine's forward and hand-written backward give the same numbers."""
    scratch = pytest.importorskip("rnnkit.scratch")
    ours_cls = {"rnn": FusedRNN, "lstm": FusedLSTM, "gru": FusedGRU}[kind]
    np_cls = {"rnn": scratch.RNN, "lstm": scratch.LSTM, "gru": scratch.GRU}[kind]
    torch.manual_seed(2)
    ours = ours_cls(I, H, num_layers=2, bidirectional=True, dtype=DT)
    ref = np_cls(I, H, num_layers=2, bidirectional=True)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    out, st = ours(x)
    d_out = torch.randn_like(out)
    d_st = tuple(torch.randn_like(s) for s in as_tuple(st))
    loss = (out * d_out).sum() + sum((s * d).sum() for s, d in zip(as_tuple(st), d_st))
    grads = torch.autograd.grad(loss, [x, *ours.parameters()])

    out_np, st_np, cache = ref.forward(x.detach().numpy())
    d_st_np = tuple(d.numpy() for d in d_st)
    dx_np, _, g_np = ref.backward(d_out.numpy(), cache, d_st_np if kind == "lstm" else d_st_np[0])
    np.testing.assert_allclose(out.detach().numpy(), out_np, rtol=1e-10, atol=1e-12)
    for s, s_np in zip(as_tuple(st), st_np if kind == "lstm" else (st_np,)):
        np.testing.assert_allclose(s.detach().numpy(), s_np, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads[0].numpy(), dx_np, rtol=1e-9, atol=1e-11)
    for (name, _), g in zip(ours.named_parameters(), grads[1:]):
        np.testing.assert_allclose(g.numpy(), g_np[name], rtol=1e-9, atol=1e-11, err_msg=name)


def test_loop_backend_and_proj_size_run_the_readable_path():
    torch.manual_seed(3)
    ref = torch.nn.LSTM(I, H, proj_size=2, dtype=DT)
    ours = FusedLSTM(I, H, proj_size=2, dtype=DT)  # the fused kernel has no projection
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I, dtype=DT)
    torch.testing.assert_close(ours(x)[0], ref(x)[0], **TOL)
    assert ours._path(x) == "loop"
    loop = FusedLSTM(I, H, dtype=DT, backend="loop")
    fast = FusedLSTM(I, H, dtype=DT, compiled=False)
    fast.load_state_dict(loop.state_dict())
    assert (loop._path(x), fast._path(x)) == ("loop", "fast")
    torch.testing.assert_close(fast(x)[0], loop(x)[0], **TOL)


def test_public_names_and_native_refused():
    assert rnnkit.FusedLSTM is FusedLSTM and issubclass(FusedLSTM, rnnkit.LSTM)
    with pytest.raises(ValueError, match="backend='native' is not available"):
        FusedGRU(I, H, backend="native")
    m = FusedLSTM(I, H, recurrent_dropout=0.25, zoneout=(0.1, 0.2))
    assert "recurrent_dropout=0.25" in repr(m) and "zoneout=(0.1, 0.2)" in repr(m)


def test_bf16_autocast_runs_and_stays_close():
    """Under CPU bf16 autocast the fast path runs in bf16 and stays near the float32 result."""
    torch.manual_seed(5)
    m = FusedLSTM(I, H, num_layers=2)
    x = torch.randn(T, B, I, requires_grad=True)
    ref, _ = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = m(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)
    out.float().sum().backward()  # the backward runs in bf16 too
    assert x.grad is not None and torch.isfinite(x.grad).all()
