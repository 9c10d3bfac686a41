"""The compiled (LN-)LSTM loop (rnnkit.nn.fast.compiled) against the readable loop, the eager
kernels and float64 finite differences.

The extension is built on first use (about a minute; cached after). Where it cannot be built here
(no C++ compiler, no ninja) these tests skip and say why; test_compiled_build.py's always run.
The compiled kernels are chosen the way users choose them: ``rnnkit.options(compiled=...)``, a
layer's ``compiled=`` or ``recurrence(..., compiled=...)``.

Tolerances: float64 results agree to 1e-10 (the compiled σ and tanh come from ATen's ``exp_u20``,
within 20 ulp, a few 1e-15 per step, on AVX2 and AVX-512 alike); float32 is held to "as accurate
as the eager kernels" against the float64 result (see ``assert_float32_as_accurate_as_eager``).
"""

from __future__ import annotations

import pytest
import torch
from compiled_checks import (
    DT,
    TOL,
    assert_float32_as_accurate,
    assert_layer_float32_as_accurate,
    assert_layout_equals_loop,
    layer_loss,
    normwise_errors,
)
from layer_helpers import perturbed as perturbed_layer
from torch.overrides import TorchFunctionMode

import rnnkit
from rnnkit.nn.fast.compiled.lstm import CompiledLSTMKernel
from rnnkit.nn.fast.driver import recurrence
from rnnkit.nn.fast.lstm import InputLNLSTMKernel
from rnnkit.nn.fast.ops import EPS
from rnnkit.nn.fast.registry import KERNELS
from rnnkit.nn.layernorm import LayerNormLSTM
from rnnkit.nn.loop import scan
from rnnkit.nn.paths import COMPILED, FAST, choose_path


def perturbed(I, H, dtype=DT, seed=0, **kw):
    """A LayerNormLSTM whose every parameter matters (``layer_helpers.perturbed``)."""
    return perturbed_layer(LayerNormLSTM, I, H, dtype, seed, **kw)


def test_kernel_choice(on):
    gi = torch.zeros(2, 3, 8)
    params = (torch.ones(8), torch.ones(2), torch.zeros(2))
    assert choose_path("auto", gi, fast_cell="ln_lstm") == COMPILED
    assert isinstance(KERNELS["ln_lstm"].compiled(gi, params), CompiledLSTMKernel)
    # dtypes the extension is not built for keep the eager kernel
    assert choose_path("auto", gi.bfloat16(), fast_cell="ln_lstm") == FAST
    # so does a layer's own compiled=False
    assert choose_path("auto", gi, fast_cell="ln_lstm", compiled=False) == FAST


LAYOUTS = {
    "bidir2-batch_first-lengths": dict(layer=dict(num_layers=2, bidirectional=True,
                                                  batch_first=True), lengths=True),
    "nobias": dict(layer=dict(bias=False), lengths=False),
    "dropouts-train": dict(layer=dict(num_layers=2, recurrent_dropout=0.3, zoneout=0.2,
                                      weight_dropout=0.25), lengths=True, train=True),
}


@pytest.mark.parametrize("case", list(LAYOUTS), ids=list(LAYOUTS))
def test_equals_readable_loop_float64(on, case):
    """Same weights, same masks (same seed): the compiled path equals backend='loop'. H = 5:
    4H = 20 is not a multiple of any vector width, so the tails are exercised."""
    assert_layout_equals_loop(LayerNormLSTM, LAYOUTS[case], T=6, B=3, I=4, H=5)


@pytest.mark.parametrize("T,B,I,H", [(7, 4, 3, 37), (3, 130, 8, 64)],
                         ids=["odd-H", "rows-split-over-threads"])
def test_float32_as_accurate_as_eager(compiled_kernels, T, B, I, H):
    """In float32, against the float64 result, the compiled step is as accurate as the eager
    kernel (normwise error per output and gradient). B=130 with 4H=256 is more than one parallel
    task (the grain is 8192 elements), so the row split is exercised where there are threads."""
    m = perturbed(I, H, dtype=torch.float32, seed=1)
    x = torch.randn(T, B, I, requires_grad=True)
    assert_layer_float32_as_accurate(m, x)


def test_inference_path_and_saturation(on):
    """no_grad keeps one row of buffers (nothing saved for backward); layer-norm gains of ~100 put
    the gate pre-activations at +-100 and beyond, where exp overflows: the saturated values equal
    the eager kernel's, with no inf or nan."""
    m = perturbed(3, 6, seed=2)
    with torch.no_grad():
        m.ln_ih_weight_l0.mul_(100.0)
        m.ln_hh_weight_l0.mul_(100.0)
        m.ln_cell_weight_l0.mul_(100.0)
    x = torch.randn(5, 2, 3, dtype=DT)
    with torch.no_grad():
        out, (h, c) = m(x)
        with rnnkit.options(compiled=False):
            out_e, (h_e, c_e) = m(x)
    assert torch.isfinite(out).all() and torch.isfinite(c).all()
    torch.testing.assert_close(out, out_e, **TOL)
    torch.testing.assert_close(c, c_e, **TOL)


def test_gradcheck_recurrence_with_masks(on):
    """Finite differences (float64) of the recurrence itself, with a hidden mask and zoneout."""
    torch.manual_seed(3)
    T, B, H = 4, 2, 3
    gi = torch.randn(T, B, 4 * H, dtype=DT, requires_grad=True)
    h0, c0 = (torch.randn(B, H, dtype=DT, requires_grad=True) for _ in range(2))
    w_hh = torch.randn(4 * H, H, dtype=DT, requires_grad=True)
    gamma_hh = (1 + 0.3 * torch.randn(4 * H, dtype=DT)).requires_grad_()
    gamma_c = (1 + 0.3 * torch.randn(H, dtype=DT)).requires_grad_()
    beta_c = (0.3 * torch.randn(H, dtype=DT)).requires_grad_()
    mask = (torch.rand(B, H, dtype=DT) > 0.3).to(DT) / 0.7
    keep = (torch.rand(T, B, H, dtype=DT) > 0.2).to(DT)

    def f(gi, h0, c0, w_hh, gamma_hh, gamma_c, beta_c):
        out, (h, c) = recurrence("ln_lstm", gi, (h0, c0), w_hh, (gamma_hh, gamma_c, beta_c),
                                 hidden_mask=mask, keep=keep, reverse=True)
        return out, h, c

    inputs = (gi, h0, c0, w_hh, gamma_hh, gamma_c, beta_c)
    assert choose_path("auto", gi, fast_cell="ln_lstm") == COMPILED  # what f runs
    assert torch.autograd.gradcheck(f, inputs)


def recurrence_case(dtype, B=3, H=5, T=6, seed=4):
    torch.manual_seed(seed)
    gi = torch.randn(T, B, 4 * H, dtype=dtype, requires_grad=True)
    h0, c0 = (torch.randn(B, H, dtype=dtype, requires_grad=True) for _ in range(2))
    w_hh = (0.5 * torch.randn(4 * H, H, dtype=dtype)).requires_grad_()
    gamma_hh = (1 + 0.3 * torch.randn(4 * H, dtype=dtype)).requires_grad_()
    gamma_c = (1 + 0.3 * torch.randn(H, dtype=dtype)).requires_grad_()
    beta_c = (0.3 * torch.randn(H, dtype=dtype)).requires_grad_()
    mask = (torch.rand(B, H, dtype=dtype) > 0.3).to(dtype) / 0.7
    return (gi, h0, c0, w_hh, gamma_hh, gamma_c, beta_c), mask


def blends(kind, T, B, H, dtype):
    """(keep, lengths) for ``recurrence``: none; zoneout on h only; zoneout on both states;
    lengths (3, 1, 6 of T=6)."""
    g = torch.Generator().manual_seed(6)
    zone = lambda: (torch.rand(T, B, H, generator=g) > 0.3).to(dtype)  # noqa: E731
    if kind == "none":
        return None, None
    if kind == "zoneout-h":
        return (zone(), None), None
    if kind == "zoneout-both":
        return (zone(), zone()), None
    return None, torch.tensor([3, 1, 6])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("masked", [False, True], ids=["plain", "hidden-mask"])
@pytest.mark.parametrize("blend", ["none", "zoneout-h", "zoneout-both", "lengths"])
@pytest.mark.parametrize("cell", ["ln_lstm", "lstm"])
def test_compiled_loop_equals_eager_driver(compiled_kernels, dtype, reverse, masked, blend,
                                           cell):
    """The compiled kernel runs the time loop itself (C++), with the same products, kernels and
    blends (zoneout, lengths) in the same order as the driver's Python loop over the eager
    kernel. Every output and gradient: float64 equal to the eager driver's to 1e-10; float32
    (the default products, and torch.mm) as accurate as the eager driver's float32 run on
    torch.mm against the float64 result, give or take the compiled σ and tanh's own error: they come from ATen's
    ``exp_u20`` (within 20 ulp, on AVX2 and AVX-512 alike), so up to ~32 float32 ulps of the value
    (32 * 2^-23 < 4e-6, normwise) beyond the eager error, which is about one ulp here. The
    whole-loop entry points ran: the compiled kernel has no per-step methods to fall back on."""
    inputs, mask = recurrence_case(DT)
    if cell == "lstm":
        inputs = inputs[:4]
    keep, lengths = blends(blend, *inputs[0].shape[:2], inputs[1].shape[1], DT)

    def once(inputs, compiled):
        gi, h0, c0, w_hh, *params = inputs
        m = None if not masked else mask.to(gi.dtype)
        k = None if keep is None else tuple(None if z is None else z.to(gi.dtype) for z in keep)
        out, (h, c) = recurrence(cell, gi, (h0, c0), w_hh, tuple(params), reverse=reverse,
                                 hidden_mask=m, keep=k, lengths=lengths, compiled=compiled)
        return (out, h, c, *torch.autograd.grad(layer_loss(out, (h, c)), inputs))

    kernel = KERNELS[cell].compiled(inputs[0], tuple(inputs[4:]))
    assert hasattr(kernel, "forward_all") and not hasattr(kernel, "forward_step")
    exact = once(inputs, compiled=False)
    if dtype == DT:
        for a, b in zip(once(inputs, compiled=True), exact):
            torch.testing.assert_close(a, b, **TOL)
        return
    inputs32 = [t.detach().float().requires_grad_() for t in inputs]

    def error(compiled, gemm):
        with rnnkit.options(gemm=gemm):
            return normwise_errors(once(inputs32, compiled=compiled), exact)

    # the bound's reference: the eager kernels on torch.mm (oneDNN's products are more accurate
    # than MKL's here, which would make the eager error too small to measure the kernels by)
    eager = error(False, "torch")
    for gemm in ("auto", "torch"):
        assert_float32_as_accurate(error(True, gemm), eager, 4e-6)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("blend", ["none", "zoneout-both"])
@pytest.mark.parametrize("cell", ["ln_lstm", "lstm"])
def test_gradcheck_whole_loop(on, reverse, blend, cell):
    """Finite differences (float64) through the C++ time loop, with a hidden mask."""
    inputs, mask = recurrence_case(DT, B=3, H=3, T=4, seed=5)
    if cell == "lstm":
        inputs = inputs[:4]
    keep, _ = blends(blend, 4, 3, 3, DT)

    def f(gi, h0, c0, w_hh, *params):
        out, (h, c) = recurrence(cell, gi, (h0, c0), w_hh, params, hidden_mask=mask,
                                 reverse=reverse, keep=keep)
        return out, h, c

    assert choose_path("auto", inputs[0], fast_cell=cell) == COMPILED  # what f runs
    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("blend", ["none", "zoneout-both", "lengths"])
def test_plain_lstm_equals_readable_loop(on, blend):
    """The compiled plain LSTM (``lstm`` cell, what rnnkit.FusedLSTM runs) against the readable
    autograd loop over ``cells.lstm_step``: float64, 1e-10, every output and gradient."""
    from rnnkit.nn.cells import lstm_step

    inputs, mask = recurrence_case(DT, seed=9)
    gi, h0, c0, w_hh = inputs[:4]
    keep, lengths = blends(blend, *gi.shape[:2], h0.shape[1], DT)

    def grads(out, h, c):
        return (out, h, c, *torch.autograd.grad(layer_loss(out, (h, c)), (gi, h0, c0, w_hh)))

    out, (h, c) = recurrence("lstm", gi, (h0, c0), w_hh, (), hidden_mask=mask, keep=keep,
                             lengths=lengths, reverse=True)
    compiled = grads(out, h, c)
    out, (h, c) = scan(lambda g, s: lstm_step(g, s[0] * mask, s[1], w_hh), gi, (h0, c0),
                       lengths, reverse=True, keep=keep)
    for a, b in zip(compiled, grads(out, h, c)):
        torch.testing.assert_close(a, b, **TOL)


def test_fused_lstm_layer_float32(compiled_kernels):
    """rnnkit.FusedLSTM on the compiled kernels, float32, in training with every dropout: as close
    to the float64 result as its eager kernel is, and torch.nn.LSTM's numbers without dropout;
    ``compiled=True`` in the constructor takes the same path as the scoped option."""
    torch.manual_seed(10)
    m = rnnkit.FusedLSTM(5, 16, num_layers=2, bidirectional=True, recurrent_dropout=0.2,
                         zoneout=0.1, weight_dropout=0.2)
    x = torch.randn(9, 6, 5, requires_grad=True)
    assert_layer_float32_as_accurate(m, x, torch.tensor([9, 8, 5, 5, 2, 1]))
    # without the dropouts it is torch.nn.LSTM (same weights, same state_dict keys)
    plain = rnnkit.FusedLSTM(5, 16, num_layers=2, bidirectional=True, compiled=True)
    ref = torch.nn.LSTM(5, 16, num_layers=2, bidirectional=True)
    plain.load_state_dict(m.state_dict())
    ref.load_state_dict(m.state_dict())
    assert plain._path(x) == COMPILED and "compiled=True" in repr(plain)
    with rnnkit.options(compiled=False):  # the constructor's choice wins over the scope
        assert plain._path(x) == COMPILED
        torch.testing.assert_close(plain(x)[0], ref(x)[0], rtol=1e-5, atol=1e-6)


def input_ln_case(dtype, B=3, H=5, T=6, seed=7):
    """x = W_ih x_t before its layer norm, and the five parameters of the ``ln_lstm_x`` cell."""
    inputs, mask = recurrence_case(dtype, B=B, H=H, T=T, seed=seed)
    gi, h0, c0, w_hh, gamma_hh, gamma_c, beta_c = inputs
    x = (2.0 * gi.detach() + 0.5).requires_grad_()  # a mean and a scale for the LN to remove
    gamma_ih = (1 + 0.3 * torch.randn(4 * H, dtype=dtype)).requires_grad_()
    shift = (0.3 * torch.randn(4 * H, dtype=dtype)).requires_grad_()
    return (x, h0, c0, w_hh, gamma_hh, gamma_c, beta_c, gamma_ih, shift), mask


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("blend", ["none", "zoneout-both", "lengths"])
def test_input_layer_norm_cell(compiled_kernels, reverse, blend):
    """``ln_lstm_x`` (the input side's layer norm inside the loop) against ``ln_lstm`` on
    ``γ_ih LN(x) + shift`` done by autograd outside it: float64, 1e-10, every gradient; both the
    compiled loop and its eager stand-in (a bulk layer norm before and after the eager kernel)."""
    inputs, mask = input_ln_case(DT)
    x, h0, c0, w_hh, gamma_hh, gamma_c, beta_c, gamma_ih, shift = inputs
    keep, lengths = blends(blend, *x.shape[:2], h0.shape[1], DT)
    kw = dict(reverse=reverse, hidden_mask=mask, keep=keep, lengths=lengths)

    def fast_x(compiled):
        out, (h, c) = recurrence("ln_lstm_x", x, (h0, c0), w_hh, (gamma_hh, gamma_c, beta_c, gamma_ih, shift),
                                 compiled=compiled, **kw)
        return (out, h, c, *torch.autograd.grad(layer_loss(out, (h, c)), inputs))

    gi = torch.nn.functional.layer_norm(x, x.shape[-1:], gamma_ih, shift, EPS)
    out, (h, c) = recurrence("ln_lstm", gi, (h0, c0), w_hh, (gamma_hh, gamma_c, beta_c), compiled=False,
                             **kw)
    reference = (out, h, c, *torch.autograd.grad(layer_loss(out, (h, c)), inputs))
    assert isinstance(KERNELS["ln_lstm_x"].eager(x, inputs[4:]), InputLNLSTMKernel)
    eager = fast_x(compiled=False)
    assert KERNELS["ln_lstm_x"].compiled(x, inputs[4:]).input_ln
    compiled = fast_x(compiled=True)
    for a, b, e in zip(compiled, reference, eager):
        torch.testing.assert_close(e, b, **TOL)
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_gradcheck_input_layer_norm(on, reverse):
    """Finite differences (float64) through the compiled loop with the input layer norm inside,
    with zoneout and a hidden mask: the gradients of x, γ_ih and the shift included."""
    inputs, mask = input_ln_case(DT, B=3, H=3, T=4, seed=8)
    keep, _ = blends("zoneout-both", 4, 3, 3, DT)

    def f(*args):
        x, h0, c0, w_hh, *params = args
        out, (h, c) = recurrence("ln_lstm_x", x, (h0, c0), w_hh, tuple(params),
                                 hidden_mask=mask, reverse=reverse, keep=keep)
        return out, h, c

    assert choose_path("auto", inputs[0], fast_cell="ln_lstm_x") == COMPILED  # what f runs

    assert torch.autograd.gradcheck(f, inputs)


def test_layer_uses_the_input_layer_norm_loop(on):
    """With the compiled kernels, LayerNormLSTM hands W_ih x to the loop (cell ``ln_lstm_x``)
    unless it runs the readable loop; without, it does its layer norm itself (cell ``ln_lstm``).
    The path is chosen per call; float32 takes the compiled kernels too, bf16 autocast not."""
    m = perturbed(3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3, dtype=DT)
    w = m._direction_weights(0, True)
    assert m._path(x) == COMPILED
    assert m._fast_inputs(x, w, 0, True, COMPILED)[0] == "ln_lstm_x"
    with rnnkit.options(compiled=False):
        assert m._path(x) == FAST
    assert m._fast_inputs(x, w, 0, True, FAST)[0] == "ln_lstm"
    assert m.float()._path(x.float()) == COMPILED
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert m._path(x.float()) == FAST
    assert LayerNormLSTM(3, 4, backend="loop")._path(x.float()) == "loop"


class CountLinear(TorchFunctionMode):
    """Counts the calls of ``F.linear`` while active."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.linear:
            self.shapes.append(tuple(args[1].shape))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_layer_projects_the_input_once(compiled_kernels, compiled):
    """Whichever cell LayerNormLSTM picks, W_ih x is computed once per layer and direction."""
    m = perturbed(3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3, dtype=DT)
    with rnnkit.options(compiled=compiled), CountLinear() as calls:
        m(x)
    assert len(calls.shapes) == 4, calls.shapes
