"""Cases shared by the tests of the compiled one-state cells (GRU, layer-norm GRU, Elman).

For each cell: its inputs to ``rnnkit.nn.fast.driver.recurrence`` (seeded), its readable step for
``rnnkit.nn.loop.scan`` (the equations of ``rnnkit.nn.cells`` / ``rnnkit.nn.layernorm``), the
blends (zoneout, lengths), the product libraries, one loss whose gradients every test compares,
and the comparisons the GRU and Elman tests share (compiled against eager, against the readable
loop, finite differences). Not a test module:
the test files import it from their own folder (pytest puts that folder on ``sys.path``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from compiled_checks import DT, TOL, assert_float32_as_accurate, normwise_errors

import rnnkit
from rnnkit.nn.cells import gru_step, rnn_step
from rnnkit.nn.fast.driver import recurrence
from rnnkit.nn.fast.ops import EPS
from rnnkit.nn.fast.products import mkl_packed_available, onednn_available
from rnnkit.nn.layernorm import ln_gru_step
from rnnkit.nn.loop import scan
from rnnkit.nn.paths import COMPILED, choose_path

#: the products the eager and compiled runs take: dtype and ``rnnkit.options(gemm=...)``
PRODUCTS = {"f64": (DT, "auto"), "f32-onednn": (torch.float32, "onednn"),
            "f32-mkl": (torch.float32, "mkl_packed"), "f32-mm": (torch.float32, "torch")}
AVAILABLE = {"onednn": onednn_available, "mkl_packed": mkl_packed_available}


def _gru(g, h_in, h, w, p):
    return gru_step(g, h, w, p[0], h_in=h_in)


def _ln_gru(g, h_in, h, w, p):
    return ln_gru_step(g, h_in, h, w, *p)


def _ln_gru_x(g, h_in, h, w, p):  # g is W_ih x, before γ_ih LN(·) + shift
    return ln_gru_step(F.layer_norm(g, g.shape[-1:], p[2], p[3], EPS), h_in, h, w, *p[:2])


#: cell -> (gates, number of (3H,) parameters, readable step(g, h_in, h, w_hh, params) -> h')
CELLS = {
    "gru": (3, 1, _gru),
    "ln_gru": (3, 2, _ln_gru),
    "ln_gru_x": (3, 4, _ln_gru_x),
    "rnn_tanh": (1, 0, lambda g, h_in, h, w, p: rnn_step(g, h_in, w, "tanh")),
    "rnn_relu": (1, 0, lambda g, h_in, h, w, p: rnn_step(g, h_in, w, "relu")),
}


def case(cell, dtype=DT, T=6, B=3, H=5, seed=4):
    """((gi, h0, w_hh, *params), hidden mask): gains near 1, shifts and biases near 0, a mean and
    a scale in W_ih x for an input layer norm to remove. H=5: 3H=15 fills no vector evenly."""
    gates, n_params, _ = CELLS[cell]
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (shift + scale * torch.randn(*shape, generator=gen, dtype=dtype)).requires_grad_()

    G = gates * H
    gi = rnd(T, B, G, scale=2.0 if cell == "ln_gru_x" else 1.0, shift=0.5 if cell == "ln_gru_x" else 0.0)
    h0 = rnd(B, H)
    w_hh = rnd(G, H, scale=0.5)
    kinds = {"gru": ["bias"], "ln_gru": ["gain", "bias"], "ln_gru_x": ["gain", "bias", "gain", "bias"]}
    params = [rnd(G, scale=0.3, shift=1.0 if k == "gain" else 0.0) for k in kinds.get(cell, [])]
    assert len(params) == n_params
    mask = (torch.rand(B, H, generator=gen, dtype=dtype) > 0.3).to(dtype) / 0.7
    return (gi, h0, w_hh, *params), mask


def blends(kind, T, B, H, dtype=DT):
    """(keep, lengths) for ``recurrence``: none; zoneout (Bernoulli update fractions); lengths
    (3, 1 and T of B=3)."""
    gen = torch.Generator().manual_seed(6)
    if kind == "none":
        return None, None
    if kind == "zoneout":
        return (torch.rand(T, B, H, generator=gen) > 0.3).to(dtype), None
    assert kind == "lengths"
    return None, torch.tensor([3, 1, T])


def loss(out, h):
    return out.sin().sum() + h.pow(2).sum()


def run(cell, inputs, compiled=None, hidden_mask=None, keep=None, lengths=None, reverse=False):
    """(out, h_n, and the gradient of every input) through ``recurrence``; ``compiled`` None
    follows ``rnnkit.options``."""
    gi, h0, w_hh, *params = inputs
    dtype = gi.dtype
    mask = None if hidden_mask is None else hidden_mask.to(dtype)
    keep = None if keep is None else keep.to(dtype)
    out, (h,) = recurrence(cell, gi, (h0,), w_hh, tuple(params), reverse=reverse,
                           hidden_mask=mask, keep=keep, lengths=lengths, compiled=compiled)
    return (out, h, *torch.autograd.grad(loss(out, h), inputs))


def run_readable(cell, inputs, hidden_mask=None, keep=None, lengths=None, reverse=False):
    """The same through ``scan`` over the cell's readable step, with autograd for the backward."""
    gi, h0, w_hh, *params = inputs
    step = CELLS[cell][2]
    mask = (lambda h: h) if hidden_mask is None else (lambda h: h * hidden_mask)
    out, (h,) = scan(lambda g, s: (step(g, mask(s[0]), s[0], w_hh, params),), gi, (h0,),
                     lengths, reverse, keep=None if keep is None else (keep,))
    return (out, h, *torch.autograd.grad(loss(out, h), inputs))


def products_or_skip(products):
    """(dtype, gemm) of ``PRODUCTS[products]``; skips where this PyTorch build lacks the library."""
    dtype, gemm = PRODUCTS[products]
    if gemm in AVAILABLE and not AVAILABLE[gemm]():
        pytest.skip(f"this PyTorch build has no {gemm} product")
    return dtype, gemm


def blended_case(cell, blend, masked=True, reverse=False, **case_kw):
    """(inputs, the keyword arguments of ``run``): ``case(cell, **case_kw)`` with the blend
    ``blend`` (``blends``), the hidden mask if ``masked``, forward or reverse."""
    inputs, mask = case(cell, **case_kw)
    T, B, _ = inputs[0].shape
    keep, lengths = blends(blend, T, B, inputs[1].shape[1])
    return inputs, dict(hidden_mask=mask if masked else None, keep=keep, lengths=lengths,
                        reverse=reverse)


def assert_compiled_equals_eager(cell, inputs, kw, dtype, gemm, bitwise=False):
    """The compiled loop against the driver's Python loop over the eager kernel, same products
    (``gemm``), masks and blends, every output and gradient: ``bitwise``, equal to the eager run
    in ``dtype``; else float64 to 1e-10 and float32 as accurate as the eager run against the
    float64 result (``assert_float32_as_accurate``, slack 4e-6)."""
    exact = run(cell, inputs, compiled=False, **kw)
    typed = [t.detach().to(dtype).requires_grad_() for t in inputs]
    with rnnkit.options(gemm=gemm):
        eager, compiled = (run(cell, typed, compiled=flag, **kw) for flag in (False, True))
    if bitwise:
        for a, b in zip(compiled, eager):
            assert torch.equal(a, b), (a - b).abs().max()
    elif dtype == DT:
        for a, b in zip(compiled, exact):
            torch.testing.assert_close(a, b, **TOL)
    else:
        assert_float32_as_accurate(normwise_errors(compiled, exact),
                                   normwise_errors(eager, exact), 4e-6)


def assert_equals_readable(cell, inputs, kw):
    """``run`` (whatever path ``rnnkit.options`` picks) against ``run_readable``: every output
    and gradient to 1e-10."""
    for a, b in zip(run(cell, inputs, **kw), run_readable(cell, inputs, **kw)):
        torch.testing.assert_close(a, b, **TOL)


def assert_gradcheck_whole_loop(cell, blend, reverse):
    """Finite differences (float64) through the compiled time loop, with a hidden mask and the
    blend: the gradients of gi (or W_ih x), h0, W_hh and every gain and bias."""
    inputs, mask = case(cell, T=4, B=3, H=3, seed=5)
    keep, lengths = blends(blend, 4, 3, 3)

    def f(gi, h0, w_hh, *params):
        out, (h,) = recurrence(cell, gi, (h0,), w_hh, params, hidden_mask=mask, keep=keep,
                               lengths=lengths, reverse=reverse)
        return out, h

    assert choose_path("auto", inputs[0], fast_cell=cell) == COMPILED  # what f runs
    assert torch.autograd.gradcheck(f, inputs)
