"""The compiled Elman loops (elman.cpp, one_state_loop.h; cells ``rnn_tanh`` and ``rnn_relu``, what
rnnkit.FusedRNN runs) against the eager kernel, the readable loop, float64 finite differences and
torch.nn.RNN.

The compiled step is the eager kernel's op for op (one addmm, or oneDNN's or MKL's packed product
then the sum, then σ), so the relu cell equals the eager kernel bit for bit, forward and backward, in
float32 and float64. The tanh cell differs only in tanh (one ``exp_u20``): float64 to 1e-10,
float32 as accurate as eager against the float64 result.
"""

from __future__ import annotations

import pytest
import torch
from compiled_checks import (
    DT,
    assert_layer_float32_as_accurate,
    assert_same_masks_same_results,
    layer_pair,
    random_lengths,
    run_layer,
)
from one_state_cases import (
    PRODUCTS,
    assert_compiled_equals_eager,
    assert_equals_readable,
    assert_gradcheck_whole_loop,
    blended_case,
    blends,
    case,
    products_or_skip,
)

import rnnkit
from rnnkit.nn.fast.compiled.elman import CompiledElmanKernel
from rnnkit.nn.fast.driver import recurrence
from rnnkit.nn.fast.registry import KERNELS
from rnnkit.nn.paths import COMPILED, choose_path

CELLS = ["rnn_tanh", "rnn_relu"]


@pytest.mark.parametrize("products", list(PRODUCTS))
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("masked", [False, True], ids=["plain", "hidden-mask"])
@pytest.mark.parametrize("blend", ["none", "zoneout", "lengths"])
@pytest.mark.parametrize("cell", CELLS)
def test_compiled_loop_equals_eager_driver(compiled_kernels, cell, blend, masked, reverse,
                                           products):
    """Against the driver's Python loop over the eager kernel, every output and gradient: relu
    bit for bit (float64; float32 by oneDNN, by MKL's packed GEMM and by torch.mm); tanh float64
    to 1e-10, float32 as accurate as eager."""
    dtype, gemm = products_or_skip(products)
    inputs, kw = blended_case(cell, blend, masked, reverse, seed=7)
    kernel = KERNELS[cell].compiled(inputs[0], ())
    assert isinstance(kernel, CompiledElmanKernel) and kernel.relu == (cell == "rnn_relu")
    assert_compiled_equals_eager(cell, inputs, kw, dtype, gemm, bitwise=cell == "rnn_relu")


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("blend", ["none", "zoneout", "lengths"])
@pytest.mark.parametrize("cell", CELLS)
def test_equals_readable_loop(on, cell, blend, reverse):
    """Against ``scan`` over ``cells.rnn_step`` with autograd, a hidden mask on: float64, 1e-10."""
    inputs, kw = blended_case(cell, blend, reverse=reverse, seed=9)
    assert choose_path("auto", inputs[0], fast_cell=cell) == COMPILED  # what run() takes
    assert_equals_readable(cell, inputs, kw)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("blend", ["zoneout", "lengths"])
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_whole_loop(on, cell, blend, reverse):
    """Finite differences (float64) through the C++ time loop, with a hidden mask."""
    assert_gradcheck_whole_loop(cell, blend, reverse)


DROPOUTS = dict(num_layers=2, bidirectional=True, recurrent_dropout=0.3, zoneout=0.2,
                weight_dropout=0.25)


def rnn_pair(nonlinearity, train, dtype=DT, I=4, H=5, seed=0):
    """(FusedRNN with every dropout, the same weights with backend='loop')."""
    spec = {"layer": dict(nonlinearity=nonlinearity, **DROPOUTS), "train": train}
    return layer_pair(rnnkit.FusedRNN, I, H, spec, dtype=dtype, seed=seed)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_fused_rnn_equals_readable_loop_float64(on, nonlinearity, train):
    """FusedRNN on the compiled loop against ``backend='loop'``: two layers, both directions,
    lengths, every dropout with the same masks (same seed): every output and gradient."""
    m, loop = rnn_pair(nonlinearity, train)
    x = torch.randn(6, 3, 4, dtype=DT, requires_grad=True)
    assert_same_masks_same_results(m, loop, x, lengths=torch.tensor([6, 2, 4]))


@pytest.mark.parametrize("T,B", [(9, 6), (3, 600)], ids=["small", "rows-split-over-threads"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_fused_rnn_float32_as_accurate_as_eager(compiled_kernels, nonlinearity, T, B):
    """Float32, training with every dropout and lengths: as close to the float64 result as the
    eager kernel. B=600 at H=16 is more than one parallel task of 8192 elements."""
    m, _ = rnn_pair(nonlinearity, True, dtype=torch.float32, I=5, H=16, seed=1)
    x = torch.randn(T, B, 5, requires_grad=True)
    assert_layer_float32_as_accurate(m, x, random_lengths(T, B))


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_fused_rnn_is_torch_nn_rnn(compiled_kernels, nonlinearity):
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

