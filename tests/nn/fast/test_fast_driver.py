"""The fused Function (hand-written BPTT) against the readable autograd loop and float64 gradcheck.

Every cell of ``rnnkit.nn.fused.CELLS``, forwards and backwards in time, with and without the
masks (lengths, zoneout-style keep, variational hidden mask): outputs, final states and the
gradients of every input must equal those of ``reference_recurrence`` over steps written with
plain autograd. Then ``torch.autograd.gradcheck`` (central differences, float64) on each cell.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rnnkit.nn.cells import lstm_step, rnn_step
from rnnkit.nn.fused import CELLS, fused_recurrence, reference_recurrence
from rnnkit.nn.layernorm import ln_gru_step, ln_lstm_step

T, B, H = 6, 3, 4
DT = torch.float64


def gru_step(g, h_in, h, w, b):
    gh = F.linear(h_in, w, b)
    r = torch.sigmoid(g[:, :H] + gh[:, :H])
    z = torch.sigmoid(g[:, H : 2 * H] + gh[:, H : 2 * H])
    n = torch.tanh(g[:, 2 * H :] + r * gh[:, 2 * H :])
    return (1 - z) * n + z * h


# cell -> (readable step(g, h_in, state, w, params) -> state, gates, n_state, param shapes)
STEPS = {
    "rnn_tanh": (lambda g, hi, s, w, p: (rnn_step(g, hi, w, "tanh"),), 1, 1, []),
    "rnn_relu": (lambda g, hi, s, w, p: (rnn_step(g, hi, w, "relu"),), 1, 1, []),
    "lstm": (lambda g, hi, s, w, p: lstm_step(g, hi, s[1], w), 4, 2, []),
    "gru": (lambda g, hi, s, w, p: (gru_step(g, hi, s[0], w, p[0]),), 3, 1, [(3 * H,)]),
    "ln_lstm": (lambda g, hi, s, w, p: ln_lstm_step(g, hi, s[1], w, *p), 4, 2,
                [(4 * H,), (H,), (H,)]),
    # the input side's layer norm inside the cell: g is W_ih x before γ_ih LN(·) + shift
    "ln_lstm_x": (lambda g, hi, s, w, p: ln_lstm_step(
        F.layer_norm(g, g.shape[-1:], p[3], p[4]), hi, s[1], w, *p[:3]), 4, 2,
        [(4 * H,), (H,), (H,), (4 * H,), (4 * H,)]),
    "ln_gru": (lambda g, hi, s, w, p: (ln_gru_step(g, hi, s[0], w, *p),), 3, 1,
               [(3 * H,), (3 * H,)]),
}


def make_inputs(cell, seed=0):
    _, gates, n_state, pshapes = STEPS[cell]
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen, dtype=DT)).requires_grad_()

    gi = rnd(T, B, gates * H)
    w = rnd(gates * H, H, scale=0.5)
    state = tuple(rnd(B, H) for _ in range(n_state))
    params = tuple(rnd(*s) for s in pshapes)
    return gi, w, state, params


def make_masks(n_state, seed=1):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([T, 2, 4])
    valid = (torch.arange(T)[:, None] < lengths[None]).to(DT).unsqueeze(-1)  # (T, B, 1)
    zone = [(torch.rand(T, B, H, generator=gen) > 0.3).to(DT) for _ in range(n_state)]
    keep = tuple(valid * z for z in zone)
    hidden_mask = (torch.rand(B, H, generator=gen) > 0.4).to(DT) / 0.6
    return {"valid": valid, "keep": keep, "hidden_mask": hidden_mask}


def run_both(cell, gi, w, state, params, **kw):
    step = STEPS[cell][0]
    fused = fused_recurrence(cell, gi, state, w, params, **kw)
    ref = reference_recurrence(lambda g, hi, s: step(g, hi, s, w, params), gi, state, **kw)
    return fused, ref


def loss(result, weights):
    out, final = result
    return (out * weights[0]).sum() + sum((s * wt).sum() for s, wt in zip(final, weights[1:]))


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("variant", ["forward", "reverse", "masks", "reverse_masks"])
def test_fused_equals_readable_loop(cell, variant):
    gi, w, state, params = make_inputs(cell)
    kw = {"reverse": variant.startswith("reverse")}
    if variant.endswith("masks"):
        kw |= make_masks(len(state))
    fused, ref = run_both(cell, gi, w, state, params, **kw)
    torch.testing.assert_close(fused[0], ref[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(fused[1], ref[1]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    gen = torch.Generator().manual_seed(2)
    weights = [torch.randn(fused[0].shape, generator=gen, dtype=DT)] + [
        torch.randn(s.shape, generator=gen, dtype=DT) for s in fused[1]
    ]
    inputs = [gi, w, *state, *params]
    g_fused = torch.autograd.grad(loss(fused, weights), inputs)
    g_ref = torch.autograd.grad(loss(ref, weights), inputs)
    for a, b in zip(g_fused, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cell", list(CELLS))
def test_fused_gradcheck(cell):
    gi, w, state, params = make_inputs(cell, seed=3)
    masks = make_masks(len(state), seed=4)

    def f(gi, w, *rest):
        st, ps = rest[: len(state)], rest[len(state) :]
        out, final = fused_recurrence(cell, gi, st, w, ps, reverse=True, **masks)
        return (out, *final)

    assert torch.autograd.gradcheck(f, (gi, w, *state, *params), fast_mode=True)


def test_unused_final_state_and_output_grads():
    """Only the output used: the final-state gradients arrive as zeros and must not break BPTT."""
    gi, w, state, params = make_inputs("ln_lstm", seed=5)
    fused, ref = run_both("ln_lstm", gi, w, state, params)
    g1 = torch.autograd.grad(fused[0].sum(), [gi, w, *params])
    g2 = torch.autograd.grad(ref[0].sum(), [gi, w, *params])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_float32_matches_float64():
    gi, w, state, params = make_inputs("lstm", seed=6)
    out64, _ = fused_recurrence("lstm", gi, state, w)
    out32, _ = fused_recurrence("lstm", gi.float(), tuple(s.float() for s in state), w.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "lstmx"}, "cell must be one of"),
        ({"n_state": 1}, "takes 2 state tensor"),
        ({"gi_gates": 3}, r"expected gi \(T, B, 4H\)"),
        ({"params": 1}, r"takes params \(\)"),
    ],
)
def test_bad_arguments_say_what_was_expected(kwargs, message):
    gi, w, state, _ = make_inputs("lstm")
    if "gi_gates" in kwargs:
        gi = torch.zeros(T, B, 3 * H, dtype=DT)
    state = state[: kwargs.get("n_state", 2)]
    params = (w,) * kwargs.get("params", 0)
    with pytest.raises(ValueError, match=message):
        fused_recurrence(kwargs.get("cell", "lstm"), gi, state, w, params)


def _as32(t):
    return t.detach().float().requires_grad_()


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("variant", ["forward", "reverse_masks"])
@pytest.mark.parametrize("packed", [True, False])
def test_float32_per_step_products(cell, variant, packed, monkeypatch):
    """Float32 takes MKL's packed GEMM for the W_hh products where PyTorch has it (and torch.mm
    when turned off): both must give the float64 readable loop's outputs and gradients."""
    import rnnkit.nn.fused as fused_mod

    if packed and not fused_mod._mkl_packed_available():
        pytest.skip("this PyTorch build has no MKL packed GEMM")
    monkeypatch.setattr(fused_mod, "PACKED_GEMM", packed)
    gi, w, state, params = make_inputs(cell, seed=7)
    kw = {"reverse": variant.startswith("reverse")}
    if variant.endswith("masks"):
        kw |= make_masks(len(state))
    assert fused_mod._Product(w.float(), B).packed is packed
    ref = run_both(cell, gi, w, state, params, **kw)[1]
    inputs32 = [_as32(t) for t in (gi, w, *state, *params)]
    gi32, w32, rest = inputs32[0], inputs32[1], inputs32[2:]
    kw32 = {k: (v.float() if isinstance(v, torch.Tensor) else
                tuple(x.float() for x in v) if isinstance(v, tuple) else v) for k, v in kw.items()}
    out = fused_recurrence(cell, gi32, tuple(rest[: len(state)]), w32, tuple(rest[len(state):]),
                           **kw32)
    torch.testing.assert_close(out[0].double(), ref[0], rtol=1e-4, atol=1e-5)
    gen = torch.Generator().manual_seed(2)
    weights = [torch.randn(ref[0].shape, generator=gen, dtype=DT)] + [
        torch.randn(s.shape, generator=gen, dtype=DT) for s in ref[1]]
    g_ref = torch.autograd.grad(loss(ref, weights), [gi, w, *state, *params])
    g32 = torch.autograd.grad(loss(out, [x.float() for x in weights]), inputs32)
    for a, b in zip(g32, g_ref):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)
