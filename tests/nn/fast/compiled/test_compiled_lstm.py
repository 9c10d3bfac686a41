"""The compiled LN-LSTM step (rnnkit.nn.cpu_kernels) against the readable loop, the eager fused
kernel and float64 finite differences.

The extension is built on first use (about a minute; cached after). Where it cannot be built here
(no C++ compiler, no ninja) the parity tests skip and say why; the error-path tests always run.
"""

from __future__ import annotations

import copy

import pytest
import torch

import rnnkit
import rnnkit.nn.cpu_kernels as cpu_kernels
import rnnkit.nn.fused as fused
from rnnkit.nn.fused import fused_recurrence
from rnnkit.nn.layernorm import LayerNormLSTM

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}


@pytest.fixture(scope="module")
def built():
    try:
        return cpu_kernels.load()
    except cpu_kernels.CPUKernelsUnavailable as e:
        pytest.skip(f"compiled CPU kernels unavailable here: {e}")


@pytest.fixture
def on(built, monkeypatch):
    """Compiled kernels on for one test (restored after, whatever happens)."""
    monkeypatch.setattr(fused, "CPU_KERNELS", True)


def perturbed(I, H, dtype=DT, seed=0, **kw):
    torch.manual_seed(seed)
    m = LayerNormLSTM(I, H, dtype=dtype, **kw)
    with torch.no_grad():  # gains and shifts away from 1 and 0, so every parameter matters
        for name, p in m.named_parameters():
            if name.startswith("ln_"):
                p.add_(0.3 * torch.randn_like(p))
    return m


def run(m, x, **kw):
    """Outputs, final states and the gradients of x and every parameter for one loss."""
    out, (h, c) = m(x, **kw)
    loss = out.sin().sum() + h.pow(2).sum() + (c * 0.7).cos().sum()
    grads = torch.autograd.grad(loss, [x, *m.parameters()])
    return (out, h, c, *grads)


def assert_float32_as_accurate_as_eager(monkeypatch, run_model, m, x):
    """``run_model(m, x)`` in float32 with the compiled kernels is as close to the float64 result
    (eager) as the eager float32 run is: normwise error per output and gradient. The compiled
    σ and tanh use ATen's exp_u20 (20 ulp): measured within 0.5-2x the eager error, itself a few
    float32 ulps."""
    exact_inputs = copy.deepcopy(m).double(), x.detach().double().requires_grad_()
    monkeypatch.setattr(fused, "CPU_KERNELS", False)
    exact = run_model(*exact_inputs)
    errors = {}
    for flag in (False, True):
        monkeypatch.setattr(fused, "CPU_KERNELS", flag)
        errors[flag] = torch.tensor([((a.double() - b).abs().max() / b.abs().max()).item()
                                     for a, b in zip(run_model(m, x), exact)])
    assert (errors[False] < 1e-5).all()  # the reference itself is sound
    assert (errors[True] <= 3 * errors[False] + 1e-6).all(), (errors[True], errors[False])


def test_kernel_choice(on):
    gi = torch.zeros(2, 3, 8)
    params = (torch.ones(8), torch.ones(2), torch.zeros(2))
    assert isinstance(fused._ln_lstm_kernel(gi, params), fused._CompiledLSTMKernel)
    # dtypes the extension is not built for keep the eager kernel
    bf = tuple(p.bfloat16() for p in params)
    assert isinstance(fused._ln_lstm_kernel(gi.bfloat16(), bf), fused._LNLSTMKernel)


LAYOUTS = {
    "bidir2-batch_first-lengths": dict(layer=dict(num_layers=2, bidirectional=True,
                                                  batch_first=True), lengths=True),
    "nobias": dict(layer=dict(bias=False), lengths=False),
    "dropouts-train": dict(layer=dict(num_layers=2, recurrent_dropout=0.3, zoneout=0.2,
                                      weight_dropout=0.25), lengths=True, train=True),
}


@pytest.mark.parametrize("case", list(LAYOUTS), ids=list(LAYOUTS))
def test_equals_readable_loop_float64(on, case):
    """Same weights, same masks (same seed): the compiled path equals backend='loop'."""
    spec = LAYOUTS[case]
    T, B, I, H = 6, 3, 4, 5  # 4H = 20: not a multiple of any vector width, so tails are exercised
    m = perturbed(I, H, **spec["layer"])
    loop = LayerNormLSTM(I, H, dtype=DT, backend="loop", **spec["layer"])
    loop.load_state_dict(m.state_dict())
    for mod in (m, loop):
        mod.train(spec.get("train", False))
    bf = spec["layer"].get("batch_first", False)
    x = torch.randn(*((B, T, I) if bf else (T, B, I)), dtype=DT, requires_grad=True)
    kw = {"lengths": torch.tensor([T, 2, 4])} if spec["lengths"] else {}
    torch.manual_seed(11)
    got = run(m, x, **kw)
    torch.manual_seed(11)
    want = run(loop, x, **kw)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("T,B,I,H", [(7, 4, 3, 37), (3, 130, 8, 64)],
                         ids=["odd-H", "rows-split-over-threads"])
def test_float32_as_accurate_as_eager(built, monkeypatch, T, B, I, H):
    """In float32, against the float64 result, the compiled step is as accurate as the eager
    kernel (normwise error per output and gradient). B=130 with 4H=256 is more than one parallel
    task (the grain is 8192 elements), so the row split is exercised where there are threads."""
    m = perturbed(I, H, dtype=torch.float32, seed=1)
    x = torch.randn(T, B, I, requires_grad=True)
    assert_float32_as_accurate_as_eager(monkeypatch, run, m, x)


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
        fused.CPU_KERNELS = False
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
    g_hh = (1 + 0.3 * torch.randn(4 * H, dtype=DT)).requires_grad_()
    g_c = (1 + 0.3 * torch.randn(H, dtype=DT)).requires_grad_()
    b_c = (0.3 * torch.randn(H, dtype=DT)).requires_grad_()
    mask = (torch.rand(B, H, dtype=DT) > 0.3).to(DT) / 0.7
    keep = (torch.rand(T, B, H, dtype=DT) > 0.2).to(DT)

    def f(gi, h0, c0, w_hh, g_hh, g_c, b_c):
        out, (h, c) = fused_recurrence("ln_lstm", gi, (h0, c0), w_hh, (g_hh, g_c, b_c),
                                       hidden_mask=mask, keep=keep, reverse=True)
        return out, h, c

    inputs = (gi, h0, c0, w_hh, g_hh, g_c, b_c)
    assert isinstance(fused._ln_lstm_kernel(gi, (g_hh, g_c, b_c)), fused._CompiledLSTMKernel)
    assert torch.autograd.gradcheck(f, inputs)


def recurrence_case(dtype, B=3, H=5, T=6, seed=4):
    torch.manual_seed(seed)
    gi = torch.randn(T, B, 4 * H, dtype=dtype, requires_grad=True)
    h0, c0 = (torch.randn(B, H, dtype=dtype, requires_grad=True) for _ in range(2))
    w_hh = (0.5 * torch.randn(4 * H, H, dtype=dtype)).requires_grad_()
    g_hh = (1 + 0.3 * torch.randn(4 * H, dtype=dtype)).requires_grad_()
    g_c = (1 + 0.3 * torch.randn(H, dtype=dtype)).requires_grad_()
    b_c = (0.3 * torch.randn(H, dtype=dtype)).requires_grad_()
    mask = (torch.rand(B, H, dtype=dtype) > 0.3).to(dtype) / 0.7
    return (gi, h0, c0, w_hh, g_hh, g_c, b_c), mask


def blends(kind, T, B, H, dtype):
    """(keep, valid) for fused_recurrence: none; zoneout on h only; zoneout on both states;
    lengths (3, 1, 6 of T=6: the keep is the valid mask, as the layers build it)."""
    g = torch.Generator().manual_seed(6)
    zone = lambda: (torch.rand(T, B, H, generator=g) > 0.3).to(dtype)  # noqa: E731
    if kind == "none":
        return None, None
    if kind == "zoneout-h":
        return (zone(), None), None
    if kind == "zoneout-both":
        return (zone(), zone()), None
    valid = (torch.arange(T)[:, None] < torch.tensor([3, 1, 6])[None, :]).unsqueeze(-1).to(dtype)
    return valid, valid


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32-packed", "f64"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("masked", [False, True], ids=["plain", "hidden-mask"])
@pytest.mark.parametrize("blend", ["none", "zoneout-h", "zoneout-both", "lengths"])
@pytest.mark.parametrize("cell", ["ln_lstm", "lstm"])
def test_whole_loop_equals_per_step_driver(on, monkeypatch, dtype, reverse, masked, blend, cell):
    """The compiled kernel runs the time loop itself (C++); it calls the same products, kernels
    and blends (zoneout, lengths) in the same order as the Python driver, so every output and
    gradient is equal bit for bit. (float32 takes MKL's packed GEMM where torch has it.)"""
    inputs, mask = recurrence_case(dtype)
    if cell == "lstm":
        inputs = inputs[:4]
    gi, h0, c0, w_hh, *params = inputs
    keep, valid = blends(blend, *gi.shape[:2], h0.shape[1], dtype)

    def once():
        out, (h, c) = fused_recurrence(cell, gi, (h0, c0), w_hh, tuple(params),
                                       reverse=reverse, hidden_mask=mask if masked else None,
                                       keep=keep, valid=valid)
        loss = out.sin().sum() + h.pow(2).sum() + (c * 0.7).cos().sum()
        return (out, h, c, *torch.autograd.grad(loss, inputs))

    monkeypatch.setattr(fused, "WHOLE_LOOP", False)
    per_step = once()

    def refuse(*args):
        raise AssertionError("the per-step path ran where the whole loop should have")

    monkeypatch.setattr(fused, "WHOLE_LOOP", True)
    assert isinstance(fused.CELLS[cell][0](gi, tuple(params)), fused._CompiledLSTMKernel)
    monkeypatch.setattr(fused._CompiledLSTMKernel, "forward_step", refuse)
    monkeypatch.setattr(fused._CompiledLSTMKernel, "backward_step", refuse)
    whole = once()
    for a, b in zip(whole, per_step):
        assert torch.equal(a, b)


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
        out, (h, c) = fused_recurrence(cell, gi, (h0, c0), w_hh, params,
                                       hidden_mask=mask, reverse=reverse, keep=keep)
        return out, h, c

    assert hasattr(fused.CELLS[cell][0](inputs[0], inputs[4:]), "forward_all")
    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("blend", ["none", "zoneout-both", "lengths"])
def test_plain_lstm_equals_readable_loop(on, blend):
    """The compiled plain LSTM (``lstm`` cell, what rnnkit.FusedLSTM runs) against the readable
    autograd loop over ``cells.lstm_step``: float64, 1e-10, every output and gradient."""
    from rnnkit.nn.cells import lstm_step
    from rnnkit.nn.fused import reference_recurrence

    inputs, mask = recurrence_case(DT, seed=9)
    gi, h0, c0, w_hh = inputs[:4]
    keep, valid = blends(blend, *gi.shape[:2], h0.shape[1], DT)
    kw = dict(hidden_mask=mask, keep=keep, valid=valid, reverse=True)

    def grads(out, h, c):
        loss = out.sin().sum() + h.pow(2).sum() + (c * 0.7).cos().sum()
        return (out, h, c, *torch.autograd.grad(loss, (gi, h0, c0, w_hh)))

    out, (h, c) = fused_recurrence("lstm", gi, (h0, c0), w_hh, (), **kw)
    compiled = grads(out, h, c)
    out, (h, c) = reference_recurrence(lambda g, hi, s: lstm_step(g, hi, s[1], w_hh), gi,
                                       (h0, c0), **kw)
    for a, b in zip(compiled, grads(out, h, c)):
        torch.testing.assert_close(a, b, **TOL)


def test_fused_lstm_layer_float32(built, monkeypatch):
    """rnnkit.FusedLSTM on the compiled kernels, float32, in training with every dropout: as close
    to the float64 result as its eager kernel is, and torch.nn.LSTM's numbers without dropout."""
    torch.manual_seed(10)
    m = rnnkit.FusedLSTM(5, 16, num_layers=2, bidirectional=True, recurrent_dropout=0.2,
                         zoneout=0.1, weight_dropout=0.2)
    x = torch.randn(9, 6, 5, requires_grad=True)
    lengths = torch.tensor([9, 8, 5, 5, 2, 1])

    def run(model, x):
        torch.manual_seed(11)
        out, (h, c) = model(x, lengths=lengths)
        loss = out.sin().sum() + h.pow(2).sum() + (c * 0.7).cos().sum()
        return (out, h, c, *torch.autograd.grad(loss, [x, *model.parameters()]))

    assert_float32_as_accurate_as_eager(monkeypatch, run, m, x)
    # without the dropouts it is torch.nn.LSTM (same weights, same state_dict keys)
    plain = rnnkit.FusedLSTM(5, 16, num_layers=2, bidirectional=True)
    ref = torch.nn.LSTM(5, 16, num_layers=2, bidirectional=True)
    plain.load_state_dict(m.state_dict())
    ref.load_state_dict(m.state_dict())
    torch.testing.assert_close(plain(x)[0], ref(x)[0], rtol=1e-5, atol=1e-6)


def input_ln_case(dtype, B=3, H=5, T=6, seed=7):
    """x = W_ih x_t before its layer norm, and the five parameters of the ``ln_lstm_x`` cell."""
    inputs, mask = recurrence_case(dtype, B=B, H=H, T=T, seed=seed)
    gi, h0, c0, w_hh, g_hh, g_c, b_c = inputs
    x = (2.0 * gi.detach() + 0.5).requires_grad_()  # a mean and a scale for the LN to remove
    g_ih = (1 + 0.3 * torch.randn(4 * H, dtype=dtype)).requires_grad_()
    shift = (0.3 * torch.randn(4 * H, dtype=dtype)).requires_grad_()
    return (x, h0, c0, w_hh, g_hh, g_c, b_c, g_ih, shift), mask


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("blend", ["none", "zoneout-both", "lengths"])
def test_input_layer_norm_cell(on, monkeypatch, reverse, blend):
    """``ln_lstm_x`` (the input side's layer norm inside the loop) against ``ln_lstm`` on
    ``γ_ih LN(x) + shift`` done by autograd outside it: float64, 1e-10, every gradient; both the
    compiled loop and its eager stand-in (a bulk layer norm before and after the eager kernel)."""
    inputs, mask = input_ln_case(DT)
    x, h0, c0, w_hh, g_hh, g_c, b_c, g_ih, shift = inputs
    keep, valid = blends(blend, *x.shape[:2], h0.shape[1], DT)
    kw = dict(reverse=reverse, hidden_mask=mask, keep=keep, valid=valid)

    def loss(out, h, c):
        return out.sin().sum() + h.pow(2).sum() + (c * 0.7).cos().sum()

    def fused_x():
        out, (h, c) = fused_recurrence("ln_lstm_x", x, (h0, c0), w_hh,
                                       (g_hh, g_c, b_c, g_ih, shift), **kw)
        return (out, h, c, *torch.autograd.grad(loss(out, h, c), inputs))

    monkeypatch.setattr(fused, "CPU_KERNELS", False)
    gi = torch.nn.functional.layer_norm(x, x.shape[-1:], g_ih, shift, fused.EPS)
    out, (h, c) = fused_recurrence("ln_lstm", gi, (h0, c0), w_hh, (g_hh, g_c, b_c), **kw)
    reference = (out, h, c, *torch.autograd.grad(loss(out, h, c), inputs))
    assert isinstance(fused._ln_lstm_x_kernel(x, inputs[4:]), fused._InputLNLSTMKernel)
    eager = fused_x()
    monkeypatch.setattr(fused, "CPU_KERNELS", True)
    assert fused._ln_lstm_x_kernel(x, inputs[4:]).input_ln
    compiled = fused_x()
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
        out, (h, c) = fused_recurrence("ln_lstm_x", x, (h0, c0), w_hh, tuple(params),
                                       hidden_mask=mask, reverse=reverse, keep=keep)
        return out, h, c

    assert torch.autograd.gradcheck(f, inputs)


def test_layer_uses_the_input_layer_norm_loop(on, monkeypatch):
    """With the kernels on, LayerNormLSTM hands W_ih x to the loop (cell ``ln_lstm_x``) unless it
    runs the readable loop; off, it does its layer norm itself (cell ``ln_lstm``)."""
    cells = []
    real = fused.fused_recurrence

    def spy(cell, *args, **kw):
        cells.append(cell)
        return real(cell, *args, **kw)

    monkeypatch.setattr(fused, "fused_recurrence", spy)
    m = perturbed(3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3, dtype=DT)
    m(x)
    assert cells == ["ln_lstm_x"] * 4
    cells.clear()
    monkeypatch.setattr(fused, "CPU_KERNELS", False)
    m(x)
    assert cells == ["ln_lstm"] * 4
    cells.clear()
    monkeypatch.setattr(fused, "CPU_KERNELS", True)
    m.float()(x.float())  # float32 takes it too; bf16 autocast would not (dtype check)
    assert cells == ["ln_lstm_x"] * 4


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_layer_projects_the_input_once(built, monkeypatch, compiled):
    """Whichever cell LayerNormLSTM picks, W_ih x is computed once per layer and direction."""
    calls = []
    linear = torch.nn.functional.linear

    def counting(*args, **kw):
        calls.append(args[1].shape)
        return linear(*args, **kw)

    monkeypatch.setattr(fused, "CPU_KERNELS", compiled)
    m = perturbed(3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3, dtype=DT)
    monkeypatch.setattr(torch.nn.functional, "linear", counting)
    m(x)
    assert len(calls) == 4, calls


def test_unavailable_says_why(monkeypatch):
    from torch.utils import cpp_extension

    monkeypatch.setattr(cpu_kernels, "_module", None)
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: False)
    with pytest.raises(cpu_kernels.CPUKernelsUnavailable, match="pip install ninja"):
        cpu_kernels.enable()
    assert fused.CPU_KERNELS is False  # a failed enable() leaves the eager kernels in place
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: True)
    monkeypatch.setenv("CXX", "no-such-compiler-rnnkit")
    with pytest.raises(cpu_kernels.CPUKernelsUnavailable, match="'no-such-compiler-rnnkit' was"):
        cpu_kernels.load()


def test_build_falls_back_to_lesser_instruction_sets(monkeypatch):
    """A compiler that cannot build the AVX-512 code gets AVX2 next, then portable code; if all
    fail, the error carries each attempt's reason."""
    from torch.utils import cpp_extension

    tried = []

    def fake_load(name, sources, extra_cflags, extra_ldflags, verbose):
        tried.append(name)
        if not name.endswith("_default"):
            raise RuntimeError(f"compiler rejects {name}")
        return "module"

    monkeypatch.setattr(cpu_kernels, "_module", None)
    monkeypatch.setattr(cpu_kernels, "_capability", lambda: "AVX512")
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: True)
    monkeypatch.setenv("CXX", "sh")  # any program on PATH passes the compiler check
    monkeypatch.setattr(cpp_extension, "load", fake_load)
    assert cpu_kernels.load() == "module"
    assert tried == [f"rnnkit_cpu_kernels_{c}" for c in ("avx512", "avx2", "default")]

    monkeypatch.setattr(cpu_kernels, "_module", None)
    monkeypatch.setattr(cpu_kernels, "_capability", lambda: "AVX2")
    monkeypatch.setattr(cpp_extension, "load", lambda name, **kw: (_ for _ in ()).throw(
        RuntimeError(f"no luck with {name}")))
    with pytest.raises(cpu_kernels.CPUKernelsUnavailable) as err:
        cpu_kernels.load()
    assert "[AVX2] no luck with rnnkit_cpu_kernels_avx2" in str(err.value)
    assert "[DEFAULT] no luck with rnnkit_cpu_kernels_default" in str(err.value)
    assert "AVX512" not in str(err.value)  # never above what torch picked


def test_enable_and_disable(built, monkeypatch):
    monkeypatch.setattr(fused, "CPU_KERNELS", False)
    cpu_kernels.enable()
    assert fused.CPU_KERNELS is True and cpu_kernels.available()
    cpu_kernels.disable()
    assert fused.CPU_KERNELS is False
