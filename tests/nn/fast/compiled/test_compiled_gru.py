"""The compiled GRU and layer-norm GRU loops (gru.cpp, one_state_loop.h) against the eager kernels,
the readable loop, float64 finite differences and torch.nn.GRU.

Cells: ``gru`` (rnnkit.FusedGRU), ``ln_gru`` (the layer-norm GRU given γ_ih LN(W_ih x) + b_ih) and
``ln_gru_x`` (what rnnkit.LayerNormGRU runs compiled: the input side's layer norm inside the
loop). The compiled kernels are chosen the way users choose them: ``rnnkit.options(compiled=...)``,
a layer's ``compiled=`` or ``recurrence(..., compiled=...)``. Float64 agrees to 1e-10 (the
compiled σ and tanh come from one ``exp_u20``, not ATen's own functions, so not bit for bit);
float32 is held to "as accurate as the eager kernels" against the float64 result.
"""

from __future__ import annotations

import pytest
import torch
from compiled_checks import (
    DT,
    TOL,
    assert_layer_float32_as_accurate,
    assert_layout_equals_loop,
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
    case,
    products_or_skip,
)

import rnnkit
from rnnkit.nn.fast.compiled.gru import CompiledGRUKernel
from rnnkit.nn.fast.driver import recurrence
from rnnkit.nn.fast.registry import KERNELS
from rnnkit.nn.layernorm import LayerNormGRU
from rnnkit.nn.paths import COMPILED, FAST, choose_path

CELLS = ["gru", "ln_gru", "ln_gru_x"]


@pytest.mark.parametrize("products", list(PRODUCTS))
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("masked", [False, True], ids=["plain", "hidden-mask"])
@pytest.mark.parametrize("blend", ["none", "zoneout", "lengths"])
@pytest.mark.parametrize("cell", CELLS)
def test_compiled_loop_equals_eager_driver(compiled_kernels, cell, blend, masked, reverse,
                                           products):
    """The compiled kernel (the whole loop in C++) against the driver's Python loop over the
    eager kernel, same products, masks and blends: every output and gradient, float64 to 1e-10;
    float32 (by oneDNN, MKL's packed GEMM and torch.mm) as accurate as the eager run."""
    dtype, gemm = products_or_skip(products)
    inputs, kw = blended_case(cell, blend, masked, reverse)
    kernel = KERNELS[cell].compiled(inputs[0], tuple(inputs[3:]))
    assert isinstance(kernel, CompiledGRUKernel) and not hasattr(kernel, "forward_step")
    assert_compiled_equals_eager(cell, inputs, kw, dtype, gemm)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("blend", ["none", "zoneout", "lengths"])
@pytest.mark.parametrize("cell", CELLS)
def test_equals_readable_loop(on, cell, blend, reverse):
    """Against ``scan`` over the cell's equations (``cells.gru_step``, ``layernorm.ln_gru_step``)
    with autograd, a hidden mask on: float64, 1e-10, every output and gradient."""
    inputs, kw = blended_case(cell, blend, reverse=reverse, seed=9)
    assert choose_path("auto", inputs[0], fast_cell=cell) == COMPILED  # what run() takes
    assert_equals_readable(cell, inputs, kw)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("blend", ["zoneout", "lengths"])
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_whole_loop(on, cell, blend, reverse):
    """Finite differences (float64) through the C++ time loop, with a hidden mask: the gradients
    of gi (or W_ih x), h0, W_hh and every gain and bias."""
    assert_gradcheck_whole_loop(cell, blend, reverse)


@pytest.mark.parametrize("cell", CELLS)
def test_no_bias(on, cell):
    """bias=False: no b_hh (and for ln_gru_x no shift): the compiled cell against the eager one,
    None where the eager kernel gives None, every other gradient to 1e-10."""
    inputs, mask = case(cell, seed=12)
    gi, h0, w_hh, *params = inputs
    params = tuple(None if cell == "gru" or i % 2 else p for i, p in enumerate(params))
    used = (gi, h0, w_hh, *[p for p in params if p is not None])

    def go(compiled):
        out, (h,) = recurrence(cell, gi, (h0,), w_hh, params, hidden_mask=mask, compiled=compiled)
        return (out, h, *torch.autograd.grad(out.sin().sum() + h.pow(2).sum(), used))

    for a, b in zip(go(True), go(False)):
        torch.testing.assert_close(a, b, **TOL)


LAYOUTS = {
    "bidir2-batch_first-lengths": dict(layer=dict(num_layers=2, bidirectional=True,
                                                  batch_first=True), lengths=True),
    "nobias": dict(layer=dict(bias=False), lengths=False),
    "dropouts-train": dict(layer=dict(num_layers=2, bidirectional=True, recurrent_dropout=0.3,
                                      zoneout=0.2, weight_dropout=0.25), lengths=True, train=True),
    "zoneout-eval": dict(layer=dict(zoneout=0.2, recurrent_dropout=0.3), lengths=True),
}


@pytest.mark.parametrize("case_name", list(LAYOUTS))
@pytest.mark.parametrize("cls", [rnnkit.FusedGRU, LayerNormGRU], ids=["FusedGRU", "LayerNormGRU"])
def test_layers_equal_readable_loop_float64(on, cls, case_name):
    """The layers on the compiled loop against ``backend='loop'``: same weights, same dropout
    masks (same seed), multi-layer, both directions, lengths: every output and gradient."""
    assert_layout_equals_loop(cls, LAYOUTS[case_name])


@pytest.mark.parametrize("T,B,I,H", [(9, 6, 5, 16), (3, 130, 8, 64)],
                         ids=["small", "rows-split-over-threads"])
@pytest.mark.parametrize("cls", [rnnkit.FusedGRU, LayerNormGRU], ids=["FusedGRU", "LayerNormGRU"])
def test_layers_float32_as_accurate_as_eager(compiled_kernels, cls, T, B, I, H):
    """Float32, training with every dropout and lengths, two layers, both directions: as close to
    the float64 result as the eager kernels are. B=130 at 3H=192 is more than one parallel task
    (the grain is 8192 elements), so the row split runs where there are threads."""
    m, _ = layer_pair(cls, I, H, LAYOUTS["dropouts-train"], dtype=torch.float32, seed=1)
    x = torch.randn(T, B, I, requires_grad=True)
    assert_layer_float32_as_accurate(m, x, random_lengths(T, B))


def test_fused_gru_is_torch_nn_gru(compiled_kernels):
    """rnnkit.FusedGRU with ``compiled=True`` in the constructor (it wins over the scope) gives
    torch.nn.GRU's outputs and gradients, float32, two layers, both directions."""
    torch.manual_seed(10)
    ref = torch.nn.GRU(5, 16, num_layers=2, bidirectional=True)
    m = rnnkit.FusedGRU(5, 16, num_layers=2, bidirectional=True, compiled=True)
    m.load_state_dict(ref.state_dict())
    x = torch.randn(9, 6, 5, requires_grad=True)
    with rnnkit.options(compiled=False):
        assert m._path(x) == COMPILED and "compiled=True" in repr(m)
        got = run_layer(m, x)
    for a, b in zip(got, run_layer(ref, x)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_save_false_keeps_nothing_and_computes_the_same(compiled_kernels, cell):
    """``save=False`` (what the driver asks under no_grad): the kernel takes no buffer for
    backward, and the C++ loop writes nothing but the states: buffers it is handed stay as they
    were, while ``save=True`` fills them. The outputs are the same bit for bit either way."""
    inputs, mask = case(cell, seed=13)
    gi, h0, w_hh, *params = (t.detach() for t in inputs)
    make = KERNELS[cell].compiled
    lean, full = make(gi, tuple(params), save=False), make(gi, tuple(params), save=True)
    assert all(t.numel() == 0 for t in lean.kept.values())
    assert all(t.shape[int(name == "stat_x")] == gi.shape[0] for name, t in full.kept.items())
    ext, sentinels = full.ext, full.kept
    outs = {}
    for save in (False, True):
        for t in sentinels.values():
            t.fill_(float("nan"))
        S = torch.zeros(gi.shape[0] + 1, *h0.shape, dtype=DT)
        S[0] = h0
        product = ext.one_state.Linear(weight=w_hh, weight_t=w_hh.t().contiguous())
        ext.gru.forward_loop(full.cell, product, ext.one_state.Masks(mask, None),
                             ext.one_state.States(S, None), full.saved, gi, False, save)
        outs[save] = S
        untouched = [name for name, t in sentinels.items() if t.isnan().all()]
        assert untouched == ([] if save else list(sentinels)), (save, untouched)
    assert torch.equal(outs[False], outs[True])
    with pytest.raises(RuntimeError, match="saving for backward needs"):  # 1 row cannot save
        ext.gru.forward_loop(lean.cell, product, ext.one_state.Masks(), ext.one_state.States(S),
                             lean.saved, gi, False, True)


@pytest.mark.parametrize("cls", [rnnkit.FusedGRU, LayerNormGRU], ids=["FusedGRU", "LayerNormGRU"])
def test_no_grad_forward_equals_training_forward(on, cls):
    """Under no_grad (the driver passes save=False) the layers give the same outputs, bit for
    bit, as the forward that keeps what backward needs, and agree with the eager kernels."""
    m, _ = layer_pair(cls, 4, 7, LAYOUTS["zoneout-eval"], seed=3)
    x = torch.randn(5, 3, 4, dtype=DT, requires_grad=True)
    lengths = torch.tensor([5, 2, 4])
    out, h = m(x, lengths=lengths)
    with torch.no_grad():
        out_ng, h_ng = m(x, lengths=lengths)
        with rnnkit.options(compiled=False):
            out_e, h_e = m(x, lengths=lengths)
    assert torch.equal(out, out_ng) and torch.equal(h, h_ng)
    torch.testing.assert_close(out_ng, out_e, **TOL)
    torch.testing.assert_close(h_ng, h_e, **TOL)


def test_saturation(on):
    """Layer-norm gains of ~100 put the gate pre-activations at +-100 and beyond, where exp
    overflows: the saturated values equal the eager kernel's, with no inf or nan, forward and
    backward."""
    m, _ = layer_pair(LayerNormGRU, 3, 6, {"layer": {}}, seed=2)
    with torch.no_grad():
        m.ln_ih_weight_l0.mul_(100.0)
        m.ln_hh_weight_l0.mul_(100.0)
    x = torch.randn(5, 2, 3, dtype=DT, requires_grad=True)
    got = run_layer(m, x)
    with rnnkit.options(compiled=False):
        want = run_layer(m, x)
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, **TOL)


def test_layer_norm_gru_hands_w_ih_x_to_the_loop(on):
    """Compiled, LayerNormGRU gives the loop W_ih x (cell ``ln_gru_x``); eager, it does the input
    layer norm itself (cell ``ln_gru``); bf16 autocast keeps the eager kernels."""
    m, _ = layer_pair(LayerNormGRU, 3, 4, {"layer": dict(num_layers=2, bidirectional=True)})
    x = torch.randn(5, 2, 3, dtype=DT)
    w = m._direction_weights(0, True)
    assert m._fast_inputs(x, w, 0, True, COMPILED)[0] == "ln_gru_x"
    assert m._fast_inputs(x, w, 0, True, FAST)[0] == "ln_gru"
    with rnnkit.options(compiled=False):
        assert m._path(x) == FAST
    assert m.float()._path(x.float()) == COMPILED
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert m._path(x.float()) == FAST
