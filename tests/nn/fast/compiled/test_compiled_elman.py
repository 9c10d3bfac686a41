"""The compiled Elman loops (elman.cpp, one_state_loop.h; cells ``rnn_tanh`` and ``rnn_relu``, what
rnnkit.FusedRNN runs) against the eager kernel, the readable loop, float64 finite differences and
torch.nn.RNN.

The compiled step is the eager kernel's op for op (one addmm, or MKL's packed product then the
sum, then σ), so the relu cell equals the eager kernel bit for bit, forward and backward, in
float32 and float64. The tanh cell differs only in tanh (one ``exp_u20``): float64 to 1e-10,
float32 as accurate as eager against the float64 result.
"""

from __future__ import annotations

import pytest
import torch
from one_state_cases import (
    DT,
    TOL,
    assert_float32_as_accurate,
    blends,
    built_or_skip,
    case,
    layer_float32_errors,
    normwise_errors,
    run,
    run_readable,
)

import rnnkit
from rnnkit.nn.fast.compiled.elman import CompiledElmanKernel
from rnnkit.nn.fast.driver import recurrence
from rnnkit.nn.fast.products import mkl_packed_available
from rnnkit.nn.fast.registry import KERNELS
from rnnkit.nn.paths import COMPILED, choose_path

CELLS = ["rnn_tanh", "rnn_relu"]


@pytest.fixture(scope="module")
def built():
    return built_or_skip()


@pytest.fixture
def on(built):
    """The compiled kernels for one test, as a user turns them on."""
    with rnnkit.options(compiled=True):
        yield


PRODUCTS = {"f64": (DT, True), "f32-packed": (torch.float32, True),
            "f32-mm": (torch.float32, False)}


@pytest.mark.parametrize("products", list(PRODUCTS))
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("masked", [False, True], ids=["plain", "hidden-mask"])
@pytest.mark.parametrize("blend", ["none", "zoneout", "lengths"])
@pytest.mark.parametrize("cell", CELLS)
def test_compiled_loop_equals_eager_driver(built, cell, blend, masked, reverse, products):
    """Against the driver's Python loop over the eager kernel, every output and gradient: relu
    bit for bit (float64; float32 by MKL's packed GEMM and by torch.mm); tanh float64 to 1e-10,
    float32 as accurate as eager."""
    dtype, packed = PRODUCTS[products]
    if packed and dtype == torch.float32 and not mkl_packed_available():
        pytest.skip("this PyTorch build has no MKL packed GEMM")
    inputs, mask = case(cell, seed=7)
    B, H = inputs[1].shape
    keep, lengths = blends(blend, inputs[0].shape[0], B, H)
    kw = dict(hidden_mask=mask if masked else None, keep=keep, lengths=lengths, reverse=reverse)
    kernel = KERNELS[cell].compiled(inputs[0], ())
    assert isinstance(kernel, CompiledElmanKernel) and kernel.relu == (cell == "rnn_relu")
    exact = run(cell, inputs, compiled=False, **kw)
    typed = [t.detach().to(dtype).requires_grad_() for t in inputs]
    with rnnkit.options(packed_gemm=packed):
        eager, compiled = (run(cell, typed, compiled=flag, **kw) for flag in (False, True))
    if cell == "rnn_relu":
        for a, b in zip(compiled, eager):
            assert torch.equal(a, b), (a - b).abs().max()
    elif dtype == DT:
        for a, b in zip(compiled, exact):
            torch.testing.assert_close(a, b, **TOL)
    else:
        assert_float32_as_accurate(normwise_errors(compiled, exact),
                                   normwise_errors(eager, exact), 4e-6)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("blend", ["none", "zoneout", "lengths"])
@pytest.mark.parametrize("cell", CELLS)
def test_equals_readable_loop(on, cell, blend, reverse):
    """Against ``scan`` over ``cells.rnn_step`` with autograd, a hidden mask on: float64, 1e-10."""
    inputs, mask = case(cell, seed=9)
    keep, lengths = blends(blend, *inputs[0].shape[:2], inputs[1].shape[1])
    kw = dict(hidden_mask=mask, keep=keep, lengths=lengths, reverse=reverse)
    assert choose_path("auto", inputs[0], fast_cell=cell) == COMPILED  # what run() takes
    for a, b in zip(run(cell, inputs, **kw), run_readable(cell, inputs, **kw)):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("blend", ["zoneout", "lengths"])
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_whole_loop(on, cell, blend, reverse):
    """Finite differences (float64) through the C++ time loop, with a hidden mask."""
    inputs, mask = case(cell, T=4, B=3, H=3, seed=5)
    keep, lengths = blends(blend, 4, 3, 3)

    def f(gi, h0, w_hh):
        out, (h,) = recurrence(cell, gi, (h0,), w_hh, (), hidden_mask=mask, keep=keep,
                               lengths=lengths, reverse=reverse)
        return out, h

    assert choose_path("auto", inputs[0], fast_cell=cell) == COMPILED  # what f runs
    assert torch.autograd.gradcheck(f, inputs)


def rnn_pair(nonlinearity, spec, dtype=DT, I=4, H=5, seed=0):
    """(FusedRNN, the same weights with backend='loop')."""
    torch.manual_seed(seed)
    m = rnnkit.FusedRNN(I, H, nonlinearity=nonlinearity, dtype=dtype, **spec)
    loop = rnnkit.FusedRNN(I, H, nonlinearity=nonlinearity, dtype=dtype, backend="loop", **spec)
    loop.load_state_dict(m.state_dict())
    return m, loop


def run_layer(m, x, **kw):
    out, h = m(x, **kw)
    return (out, h, *torch.autograd.grad(out.sin().sum() + h.pow(2).sum(), [x, *m.parameters()]))


DROPOUTS = dict(num_layers=2, bidirectional=True, recurrent_dropout=0.3, zoneout=0.2,
                weight_dropout=0.25)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_fused_rnn_equals_readable_loop_float64(on, nonlinearity, train):
    """FusedRNN on the compiled loop against ``backend='loop'``: two layers, both directions,
    lengths, every dropout with the same masks (same seed): every output and gradient."""
    m, loop = rnn_pair(nonlinearity, DROPOUTS)
    m.train(train), loop.train(train)
    x = torch.randn(6, 3, 4, dtype=DT, requires_grad=True)
    lengths = torch.tensor([6, 2, 4])
    assert m._path(x) == COMPILED
    torch.manual_seed(11)
    got = run_layer(m, x, lengths=lengths)
    torch.manual_seed(11)
    want = run_layer(loop, x, lengths=lengths)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("T,B", [(9, 6), (3, 600)], ids=["small", "rows-split-over-threads"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_fused_rnn_float32_as_accurate_as_eager(built, nonlinearity, T, B):
    """Float32, training with every dropout and lengths: as close to the float64 result as the
    eager kernel. B=600 at H=16 is more than one parallel task of 8192 elements."""
    m, _ = rnn_pair(nonlinearity, DROPOUTS, dtype=torch.float32, I=5, H=16, seed=1)
    x = torch.randn(T, B, 5, requires_grad=True)
    lengths = torch.randint(1, T + 1, (B,))
    lengths[0] = T

    def go(model, x):
        torch.manual_seed(11)
        return run_layer(model, x, lengths=lengths)

    errors = layer_float32_errors(go, m, x)
    assert_float32_as_accurate(errors[True], errors[False], 1e-6)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_fused_rnn_is_torch_nn_rnn(built, nonlinearity):
    """FusedRNN with ``compiled=True`` in the constructor gives torch.nn.RNN's outputs and
    gradients (float32, two layers, both directions, no dropout)."""
    torch.manual_seed(10)
    ref = torch.nn.RNN(5, 16, num_layers=2, bidirectional=True, nonlinearity=nonlinearity)
    m = rnnkit.FusedRNN(5, 16, num_layers=2, bidirectional=True, nonlinearity=nonlinearity,
                        compiled=True)
    m.load_state_dict(ref.state_dict())
    x = torch.randn(9, 6, 5, requires_grad=True)
    assert m._path(x) == COMPILED
    for a, b in zip(run_layer(m, x), run_layer(ref, x)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_save_flag(on, cell):
    """The Elman cell keeps nothing for backward beyond its states (its backward reads σ' off
    h'), so ``save=False`` (under no_grad) and ``save=True`` run the same loop: the same outputs
    bit for bit."""
    inputs, mask = case(cell, seed=13)
    gi, h0, w_hh = inputs
    keep, _ = blends("zoneout", *gi.shape[:2], h0.shape[1])
    out, (h,) = recurrence(cell, gi, (h0,), w_hh, (), hidden_mask=mask, keep=keep)
    assert out.requires_grad
    with torch.no_grad():
        out_ng, (h_ng,) = recurrence(cell, gi, (h0,), w_hh, (), hidden_mask=mask, keep=keep)
    assert torch.equal(out, out_ng) and torch.equal(h, h_ng)

