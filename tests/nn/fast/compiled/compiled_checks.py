"""Checks shared by the tests of every compiled loop (LSTM, GRU, Elman): the tolerances, the
float32 bound, and the layer on the compiled loop against its readable twin.

Float64 agrees to 1e-10 (the compiled σ and tanh come from ATen's ``exp_u20``, not ATen's own
functions, so not bit for bit); float32 is held to "as accurate as the eager kernels" against the
float64 result. Not a test module: the test files import it from their own folder (pytest puts
that folder on ``sys.path``).
"""

from __future__ import annotations

import copy

import torch
from layer_helpers import perturbed

import rnnkit
from rnnkit.nn.paths import COMPILED

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}
#: the seed drawn before each run of a layer, so both runs draw the same dropout masks
MASK_SEED = 11


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


def layer_loss(out, state):
    """One loss that every output and state takes part in: (h, c) for an LSTM, h otherwise."""
    if isinstance(state, tuple):
        h, c = state
        return out.sin().sum() + h.pow(2).sum() + (c * 0.7).cos().sum()
    return out.sin().sum() + state.pow(2).sum()


def run_layer(m, x, **kw):
    """(out, every final state, the gradients of x and of every parameter) for ``layer_loss``."""
    out, state = m(x, **kw)
    states = state if isinstance(state, tuple) else (state,)
    return (out, *states, *torch.autograd.grad(layer_loss(out, state), [x, *m.parameters()]))


def layer_pair(cls, I, H, spec, dtype=DT, seed=0):
    """(the layer on the fast path, ``perturbed``, the same weights with backend='loop'), in
    training if ``spec["train"]``. ``spec["layer"]``: the constructor's other arguments."""
    m = perturbed(cls, I, H, dtype, seed, **spec["layer"])
    loop = cls(I, H, dtype=dtype, backend="loop", **spec["layer"])
    loop.load_state_dict(m.state_dict())
    for mod in (m, loop):
        mod.train(spec.get("train", False))
    return m, loop


def assert_same_masks_same_results(m, loop, x, **kw):
    """``m`` (compiled) and ``loop`` run with the same dropout masks (same seed): every output,
    final state and gradient to 1e-10."""
    assert m._path(x) == COMPILED
    torch.manual_seed(MASK_SEED)
    got = run_layer(m, x, **kw)
    torch.manual_seed(MASK_SEED)
    want = run_layer(loop, x, **kw)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL)


def assert_layout_equals_loop(cls, spec, T=6, B=3, I=4, H=5):
    """The layer ``cls`` built as ``spec`` says (LAYOUTS in the test files: batch_first, lengths
    (T, 2, 4) or none, train) on the compiled loop against ``backend='loop'``, float64."""
    m, loop = layer_pair(cls, I, H, spec)
    bf = spec["layer"].get("batch_first", False)
    x = torch.randn(*((B, T, I) if bf else (T, B, I)), dtype=DT, requires_grad=True)
    kw = {"lengths": torch.tensor([T, 2, 4])} if spec["lengths"] else {}
    assert_same_masks_same_results(m, loop, x, **kw)


def assert_layer_float32_as_accurate(m, x, lengths=None, slack=1e-6):
    """The float32 layer ``m`` on ``x`` (same dropout masks each run) is as close to its float64
    result with the compiled kernels as with the eager ones (``assert_float32_as_accurate``)."""

    def go(model, x):
        torch.manual_seed(MASK_SEED)
        return run_layer(model, x, lengths=lengths)

    errors = layer_float32_errors(go, m, x)
    assert_float32_as_accurate(errors[True], errors[False], slack)


def random_lengths(T, B):
    """B lengths in 1..T, the first T (so the padded output keeps T steps)."""
    lengths = torch.randint(1, T + 1, (B,))
    lengths[0] = T
    return lengths
