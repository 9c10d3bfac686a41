"""The fast path's driver (hand-written BPTT) against the readable loop and float64 gradcheck.

Every cell of ``rnnkit.nn.fast.registry.KERNELS`` on its eager kernel, forwards and backwards in
time, with and without the masks (lengths, zoneout-style keep, variational hidden mask): outputs,
final states and the gradients of every input must equal those of ``rnnkit.nn.loop.scan`` over
steps written with plain autograd. Then ``torch.autograd.gradcheck`` (central differences,
float64) on each cell.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import rnnkit
from rnnkit.nn.cells import lstm_step, rnn_step
from rnnkit.nn.fast.compiled.build import kernels
from rnnkit.nn.fast.driver import recurrence
from rnnkit.nn.fast.products import (
    Products,
    linear,
    mkl_packed_available,
    onednn_available,
    weight_grad,
)
from rnnkit.nn.fast.registry import KERNELS
from rnnkit.nn.layernorm import ln_gru_step, ln_lstm_step
from rnnkit.nn.loop import scan

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
    # the input side's layer norm inside the cell: g is W_ih x before γ_ih LN(·) + shift
    "ln_gru_x": (lambda g, hi, s, w, p: (ln_gru_step(
        F.layer_norm(g, g.shape[-1:], p[2], p[3]), hi, s[0], w, *p[:2]),), 3, 1,
        [(3 * H,), (3 * H,), (3 * H,), (3 * H,)]),
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
    """Lengths (T, 2, 4), zoneout's keep per state, a variational hidden mask."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([T, 2, 4])
    keep = tuple((torch.rand(T, B, H, generator=gen) > 0.3).to(DT) for _ in range(n_state))
    hidden_mask = (torch.rand(B, H, generator=gen) > 0.4).to(DT) / 0.6
    return {"lengths": lengths, "keep": keep, "hidden_mask": hidden_mask}


def run_both(cell, gi, w, state, params, reverse=False, lengths=None, keep=None,
             hidden_mask=None):
    """The fast path's eager kernel and the readable loop over the same step, same masks."""
    step = STEPS[cell][0]
    fast = recurrence(cell, gi, state, w, params, reverse=reverse, lengths=lengths, keep=keep,
                      hidden_mask=hidden_mask, compiled=False)

    def readable(g, s):  # the dropout mask on the h entering W_hh, as the layers' steps apply it
        return step(g, s[0] if hidden_mask is None else s[0] * hidden_mask, s, w, params)

    ref = scan(readable, gi, state, lengths, reverse, keep=keep)
    return fast, ref


def loss(result, weights):
    out, final = result
    return (out * weights[0]).sum() + sum((s * wt).sum() for s, wt in zip(final, weights[1:]))


@pytest.mark.parametrize("cell", list(KERNELS))
@pytest.mark.parametrize("variant", ["forward", "reverse", "masks", "reverse_masks"])
def test_fast_equals_readable_loop(cell, variant):
    gi, w, state, params = make_inputs(cell)
    kw = {"reverse": variant.startswith("reverse")}
    if variant.endswith("masks"):
        kw |= make_masks(len(state))
    fast, ref = run_both(cell, gi, w, state, params, **kw)
    torch.testing.assert_close(fast[0], ref[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(fast[1], ref[1]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    gen = torch.Generator().manual_seed(2)
    weights = [torch.randn(fast[0].shape, generator=gen, dtype=DT)] + [
        torch.randn(s.shape, generator=gen, dtype=DT) for s in fast[1]
    ]
    inputs = [gi, w, *state, *params]
    g_fast = torch.autograd.grad(loss(fast, weights), inputs)
    g_ref = torch.autograd.grad(loss(ref, weights), inputs)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cell", list(KERNELS))
def test_fast_gradcheck(cell):
    gi, w, state, params = make_inputs(cell, seed=3)
    masks = make_masks(len(state), seed=4)

    def f(gi, w, *rest):
        st, ps = rest[: len(state)], rest[len(state) :]
        out, final = recurrence(cell, gi, st, w, ps, reverse=True, compiled=False, **masks)
        return (out, *final)

    assert torch.autograd.gradcheck(f, (gi, w, *state, *params), fast_mode=True)


def test_unused_final_state_and_output_grads():
    """Only the output used: the final-state gradients arrive as zeros and must not break BPTT."""
    gi, w, state, params = make_inputs("ln_lstm", seed=5)
    fast, ref = run_both("ln_lstm", gi, w, state, params)
    g1 = torch.autograd.grad(fast[0].sum(), [gi, w, *params])
    g2 = torch.autograd.grad(ref[0].sum(), [gi, w, *params])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_float32_matches_float64():
    gi, w, state, params = make_inputs("lstm", seed=6)
    out64, _ = recurrence("lstm", gi, state, w, compiled=False)
    out32, _ = recurrence("lstm", gi.float(), tuple(s.float() for s in state), w.float(),
                          compiled=False)
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
        recurrence(kwargs.get("cell", "lstm"), gi, state, w, params)


def test_compiled_refused_where_no_compiled_kernel_applies():
    gi, w, state, params = make_inputs("gru")
    with pytest.raises(ValueError, match="no compiled kernel takes cell 'gru' on cpu torch.bfloat16"):
        recurrence("gru", gi.bfloat16(), tuple(s.bfloat16() for s in state), w.bfloat16(),
                   tuple(p.bfloat16() for p in params), compiled=True)


def _as32(t):
    return t.detach().float().requires_grad_()


@pytest.mark.parametrize("cell", list(KERNELS))
@pytest.mark.parametrize("variant", ["forward", "reverse_masks"])
@pytest.mark.parametrize("gemm", ["onednn", "mkl_packed", "torch"])
def test_float32_per_step_products(cell, variant, gemm):
    """Float32 takes the W_hh products of ``rnnkit.options(gemm=...)`` (oneDNN, MKL's packed
    GEMM, torch.mm), with the whole-sequence products by the same library: each must give the
    float64 readable loop's outputs and gradients, on the eager kernels and (where a compiled
    kernel takes the cell) the compiled ones. A library this PyTorch lacks is skipped."""
    available = {"onednn": onednn_available(), "mkl_packed": mkl_packed_available(),
                 "torch": True}
    if not available[gemm]:
        pytest.skip(f"this PyTorch build has no {gemm} products")
    gi, w, state, params = make_inputs(cell, seed=7)
    kw = {"reverse": variant.startswith("reverse")}
    if variant.endswith("masks"):
        kw |= make_masks(len(state))
    with rnnkit.options(gemm=gemm):
        assert Products(w.float(), B).backend == gemm
        assert Products(w.float(), B, steps=1).backend == "torch"  # one step: no packing
    ref = run_both(cell, gi, w, state, params, **kw)[1]
    for compiled in (False, True) if KERNELS[cell].compiled else (False,):
        if compiled and kernels() is None:
            continue  # warned once: no compiler here
        check_float32(cell, gemm, compiled, gi, w, state, params, kw, ref)


def check_float32(cell, gemm, compiled, gi, w, state, params, kw, ref):
    inputs32 = [_as32(t) for t in (gi, w, *state, *params)]
    gi32, w32, rest = inputs32[0], inputs32[1], inputs32[2:]
    kw32 = {k: (v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else
                tuple(x.float() for x in v) if isinstance(v, tuple) else v) for k, v in kw.items()}
    with rnnkit.options(gemm=gemm):
        out = recurrence(cell, gi32, tuple(rest[: len(state)]), w32, tuple(rest[len(state):]),
                         compiled=compiled, **kw32)
    torch.testing.assert_close(out[0].double(), ref[0], rtol=1e-4, atol=1e-5)
    gen = torch.Generator().manual_seed(2)
    weights = [torch.randn(ref[0].shape, generator=gen, dtype=DT)] + [
        torch.randn(s.shape, generator=gen, dtype=DT) for s in ref[1]]
    g_ref = torch.autograd.grad(loss(ref, weights), [gi, w, *state, *params], retain_graph=True)
    g32 = torch.autograd.grad(loss(out, [x.float() for x in weights]), inputs32)
    for a, b in zip(g32, g_ref):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 5, 0])
@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_and_weight_grad_match_float64(rows, bias):
    """``linear``'s three gradients and ``weight_grad`` (oneDNN's backward-weights primitive,
    which reads dy and x untransposed) equal float64 autograd's, with and without a bias, on
    one row, several, and none (a zero gradient)."""
    if not onednn_available():
        pytest.skip("this PyTorch build has no oneDNN products")
    gen = torch.Generator().manual_seed(3)
    x, w = torch.randn(2, rows, 7, generator=gen, dtype=DT), torch.randn(9, 7, generator=gen, dtype=DT)
    b = torch.randn(9, generator=gen, dtype=DT) if bias else None
    dy = torch.randn(2, rows, 9, generator=gen, dtype=DT)
    ins = [t for t in (x, w, b) if t is not None]
    ref = torch.autograd.grad(F.linear(*[t.requires_grad_() for t in ins]), ins, dy)
    ins32 = [t.detach().float().requires_grad_() for t in ins]
    with rnnkit.options(gemm="onednn"):
        got = torch.autograd.grad(linear(*ins32), ins32, dy.float())
        d_w = weight_grad(dy.float().reshape(-1, 9), x.float().reshape(-1, 7))
    for a, r in zip([*got, d_w], [*ref, ref[1]]):
        assert a.dtype == torch.float32 and a.shape == r.shape
        torch.testing.assert_close(a.double(), r, rtol=1e-5, atol=1e-5)
