"""Cases shared by the tests of the compiled one-state cells (GRU, layer-norm GRU, Elman).

For each cell: its inputs to ``rnnkit.nn.fast.driver.recurrence`` (seeded), its readable step for
``rnnkit.nn.loop.scan`` (the equations of ``rnnkit.nn.cells`` / ``rnnkit.nn.layernorm``), the
blends (zoneout, lengths) and one loss whose gradients every test compares. Not a test module:
the test files import it from their own folder (pytest puts that folder on ``sys.path``).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import rnnkit
from rnnkit.nn.cells import gru_step, rnn_step
from rnnkit.nn.fast.compiled import CPUKernelsUnavailable, load
from rnnkit.nn.fast.driver import recurrence
from rnnkit.nn.fast.ops import EPS
from rnnkit.nn.layernorm import ln_gru_step
from rnnkit.nn.loop import scan

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}


def built_or_skip():
    try:
        return load()
    except CPUKernelsUnavailable as e:
        pytest.skip(f"compiled CPU kernels unavailable here: {e}")


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


def normwise_errors(results, exact):
    """max |a - b| / max |b| per tensor, against the float64 results."""
    return torch.tensor([((a.double() - b).abs().max() / b.abs().max()).item()
                         for a, b in zip(results, exact)])


def assert_float32_as_accurate(errors_compiled, errors_eager, slack):
    """The compiled float32 run is within 3x the eager run's error against float64, plus
    ``slack``: the compiled σ and tanh come from ATen's ``exp_u20`` (within 20 ulp, on AVX2 and
    AVX-512 alike), so up to a few tens of float32 ulps of a value beyond the eager error."""
    assert (errors_eager < 1e-5).all()  # the reference itself is sound
    assert (errors_compiled <= 3 * errors_eager + slack).all(), (errors_compiled, errors_eager)


def layer_float32_errors(run_model, m, x):
    """Normwise errors of ``run_model(m, x)`` in float32 against float64 (eager), with the
    compiled kernels off and on: {False: errors, True: errors}."""
    exact_inputs = copy.deepcopy(m).double(), x.detach().double().requires_grad_()
    with rnnkit.options(compiled=False):
        exact = run_model(*exact_inputs)
    errors = {}
    for flag in (False, True):
        with rnnkit.options(compiled=flag):
            errors[flag] = normwise_errors(run_model(m, x), exact)
    return errors
