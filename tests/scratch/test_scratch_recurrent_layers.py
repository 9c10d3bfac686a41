"""rnnkit.scratch RNN/LSTM/GRU layers against PyTorch autograd on the same weights.

Outputs, final states and the gradients for the input, the initial state and every parameter, for
one-layer, multi-layer, bidirectional and projected configurations; float64 to 1e-10 and float32
to 1e-4 (relative to the scale of each reference array). Both engines: the textbook layers
(scratch.RNN, ...: one cell step per time step) and the speed-tuned ones (scratch.fast.RNN, ...).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scratch_helpers import IMPLS, make_torch_rnn, rel_err, to_torch_state, torch_forward_backward

from rnnkit import scratch

T, B, I, H, P = 5, 3, 4, 6, 3

CONFIGS = [
    ("rnn", {}),
    ("rnn", {"nonlinearity": "relu", "num_layers": 2}),
    ("rnn", {"num_layers": 2, "bidirectional": True}),
    ("lstm", {}),
    ("lstm", {"num_layers": 2, "bidirectional": True}),
    ("lstm", {"num_layers": 2, "bidirectional": True, "proj_size": P}),
    ("lstm", {"proj_size": P, "bias": False}),
    ("gru", {}),
    ("gru", {"num_layers": 2, "bidirectional": True}),
    ("gru", {"num_layers": 3, "bias": False}),
]
SCRATCH = {"rnn": scratch.RNN, "lstm": scratch.LSTM, "gru": scratch.GRU}
FAST = {"rnn": scratch.fast.RNN, "lstm": scratch.fast.LSTM, "gru": scratch.fast.GRU}
ENGINES = {"textbook": SCRATCH, "fast": FAST}


def _data(model, kind, dtype, seed=1):
    rng = np.random.default_rng(seed)
    L = model.num_layers * model.num_directions
    H_out = model.output_size
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((L, B, H_out)).astype(dtype)
    d_out = rng.standard_normal((T, B, model.num_directions * H_out)).astype(dtype)
    d_hn = rng.standard_normal((L, B, H_out)).astype(dtype)
    if kind == "lstm":
        c0 = rng.standard_normal((L, B, H)).astype(dtype)
        d_cn = rng.standard_normal((L, B, H)).astype(dtype)
        return x, (h0, c0), d_out, (d_hn, d_cn)
    return x, h0, d_out, d_hn


def _compare(kind, kw, impl, dtype, tol, engine="textbook"):
    model = ENGINES[engine][kind](I, H, dtype=dtype, seed=0, **kw)
    oracle = make_torch_rnn(kind, impl, I, H, **kw).to(getattr(torch, np.dtype(dtype).name))
    oracle.load_state_dict(to_torch_state(model))  # scratch -> torch: same names and shapes
    x, hx, d_out, d_hn = _data(model, kind, dtype)
    out, h_n, cache = model.forward(x, hx)
    d_x, d_hx, grads = model.backward(d_out, cache, d_hn)
    r_out, r_hn, r_dx, r_dhx, r_grads = torch_forward_backward(oracle, x, hx, d_out, d_hn, kind == "lstm")
    pairs = [("output", out, r_out), ("d_x", d_x, r_dx)]
    if kind == "lstm":
        pairs += [("h_n", h_n[0], r_hn[0]), ("c_n", h_n[1], r_hn[1]),
                  ("d_h0", d_hx[0], r_dhx[0]), ("d_c0", d_hx[1], r_dhx[1])]
    else:
        pairs += [("h_n", h_n, r_hn), ("d_h0", d_hx, r_dhx)]
    assert list(grads) == list(r_grads), "gradient names and order must be the state dict's"
    pairs += [(name, grads[name], r_grads[name]) for name in r_grads]
    for name, ours, ref in pairs:
        assert ours.dtype == np.dtype(dtype), name
        assert rel_err(ours, ref) < tol, (name, rel_err(ours, ref))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind,kw", CONFIGS, ids=[f"{k}-{'-'.join(f'{a}={b}' for a, b in kw.items())}" for k, kw in CONFIGS])
def test_layer_matches_autograd_float64(kind, kw, impl, engine):
    _compare(kind, kw, impl, np.float64, 1e-10, engine)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind,kw", [CONFIGS[2], CONFIGS[5], CONFIGS[8]], ids=["rnn", "lstm-proj", "gru"])
def test_layer_matches_autograd_float32(kind, kw, engine):
    _compare(kind, kw, "torch.nn", np.float32, 1e-4, engine)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_state_dict_from_torch_tensors_and_back(kind):
    torch.manual_seed(0)
    kw = {"num_layers": 2, "bidirectional": True, **({"proj_size": 2} if kind == "lstm" else {})}
    ref = make_torch_rnn(kind, "torch.nn", I, H, **kw).double()
    model = SCRATCH[kind](I, H, seed=5, **kw)
    model.load_state_dict(ref.state_dict())  # torch tensors, by duck typing
    sd = model.state_dict()
    assert list(sd) == list(ref.state_dict())
    for k, v in ref.state_dict().items():
        np.testing.assert_array_equal(sd[k], v.numpy())
    x = np.random.default_rng(0).standard_normal((T, B, I))
    out, _, _ = model.forward(x)
    r_out = ref(torch.from_numpy(x))[0].detach().numpy()
    assert rel_err(out, r_out) < 1e-12
    # and back: a fresh torch module loads the scratch export
    ref2 = make_torch_rnn(kind, "torch.nn", I, H, **kw).double()
    ref2.load_state_dict(to_torch_state(model))
    assert torch.equal(ref2(torch.from_numpy(x))[0], ref(torch.from_numpy(x))[0])


def test_state_dict_from_rnnkit_nn():
    import rnnkit.nn

    src = rnnkit.nn.LSTM(I, H, num_layers=2, proj_size=2, dtype=torch.float64)
    model = scratch.LSTM(I, H, num_layers=2, proj_size=2)
    model.load_state_dict(src.state_dict())
    x = np.random.default_rng(0).standard_normal((T, B, I))
    assert rel_err(model.forward(x)[0], src(torch.from_numpy(x))[0].detach().numpy()) < 1e-12


@pytest.mark.parametrize("engine", ENGINES)
def test_float32_model_loads_float64_weights_and_default_state_is_zero(engine):
    model = ENGINES[engine]["gru"](I, H, dtype=np.float32, seed=0)
    model64 = ENGINES[engine]["gru"](I, H, seed=1)
    model.load_state_dict(model64.state_dict())
    assert all(p.dtype == np.float32 for p in model.parameters().values())
    x = np.random.default_rng(0).standard_normal((T, B, I))
    out, h_n, _ = model.forward(x)
    out0, _, _ = model.forward(x, np.zeros((1, B, H)))
    np.testing.assert_array_equal(out, out0)
    assert out.dtype == np.float32 and rel_err(out, model64.forward(x)[0]) < 1e-5


@pytest.mark.parametrize("engine", ENGINES)
def test_index_input_equals_one_hot(engine):
    model = ENGINES[engine]["lstm"](7, H, num_layers=2, bidirectional=True, seed=0)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 7, size=(T, B))
    one_hot = np.eye(7)[idx]  # (T, B, 7)
    d_out = rng.standard_normal((T, B, 2 * H))
    out_i, _, cache_i = model.forward(idx)
    out_h, _, cache_h = model.forward(one_hot)
    assert rel_err(out_i, out_h) < 1e-13
    d_x_i, _, g_i = model.backward(d_out, cache_i)
    _, _, g_h = model.backward(d_out, cache_h)
    assert d_x_i is None
    for name in g_h:
        assert rel_err(g_i[name], g_h[name]) < 1e-12, name


@pytest.mark.parametrize("engine", ENGINES)
def test_backward_with_only_state_gradient(engine):
    """d_output=None: the gradient enters through h_n alone (as a loss on the final state)."""
    model = ENGINES[engine]["gru"](I, H, num_layers=2, seed=0)
    oracle = make_torch_rnn("gru", "torch.nn", I, H, num_layers=2).double()
    oracle.load_state_dict(to_torch_state(model))
    x, h0, _, d_hn = _data(model, "gru", np.float64)
    _, _, cache = model.forward(x, h0)
    d_x, d_h0, grads = model.backward(None, cache, d_hn)
    zeros = np.zeros((T, B, H))
    _, _, r_dx, r_dh0, r_grads = torch_forward_backward(oracle, x, h0, zeros, d_hn, False)
    assert rel_err(d_x, r_dx) < 1e-10 and rel_err(d_h0, r_dh0) < 1e-10
    assert all(rel_err(grads[k], r_grads[k]) < 1e-10 for k in r_grads)


@pytest.mark.parametrize("engine", ENGINES)
def test_errors_say_expected_and_got(engine):
    scratch_ = ENGINES[engine]
    lstm = scratch_["lstm"](I, H, num_layers=2)
    with pytest.raises(ValueError, match="Expected 4, got 5"):
        lstm.forward(np.zeros((T, B, 5)))
    with pytest.raises(ValueError, match=r"Expected hx\[0\] size \(2, 3, 6\), got \(1, 3, 6\)"):
        lstm.forward(np.zeros((T, B, I)), (np.zeros((1, B, H)), np.zeros((2, B, H))))
    with pytest.raises(ValueError, match="pair"):
        lstm.forward(np.zeros((T, B, I)), np.zeros((2, B, H)))
    with pytest.raises(ValueError, match="Expected 3 dimensions"):
        lstm.forward(np.zeros((T, I)))
    with pytest.raises(ValueError, match=r"Expected values in \[0, 4\)"):
        lstm.forward(np.full((T, B), 4))
    with pytest.raises(ValueError, match="proj_size must be smaller"):
        scratch_["lstm"](I, H, proj_size=H)
    with pytest.raises(ValueError, match="nonlinearity must be one of tanh, relu; got 'sigmoid'"):
        scratch_["rnn"](I, H, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="bidirectional should be of type bool, got: str"):
        scratch_["rnn"](I, H, bidirectional="relu")
    with pytest.raises(TypeError, match="dtype must be one of float32, float64; got int32"):
        scratch_["gru"](I, H, dtype=np.int32)
    with pytest.raises(KeyError, match="missing"):
        lstm.load_state_dict({"weight_ih_l0": np.zeros((4 * H, I))})
    bad = lstm.state_dict()
    bad["weight_hh_l1"] = np.zeros((4 * H, H + 1))
    with pytest.raises(ValueError, match=r"size mismatch for weight_hh_l1: expected \(24, 6\), got \(24, 7\)"):
        lstm.load_state_dict(bad)
    out, hn, cache = lstm.forward(np.zeros((T, B, I)))
    with pytest.raises(ValueError, match="d_output must have the output's shape"):
        lstm.backward(np.zeros((T, B, H + 1)), cache)


def test_repr_and_initialisation_bounds():
    model = scratch.LSTM(I, 16, num_layers=2, bidirectional=True, seed=0)
    assert repr(model) == "LSTM(4, 16, num_layers=2, bidirectional=True)"
    for p in model.parameters().values():
        assert np.abs(p).max() <= 1 / np.sqrt(16)  # torch: U(-1/sqrt(H), 1/sqrt(H))
    assert np.array_equal(scratch.LSTM(I, 16, seed=3).state_dict()["weight_ih_l0"],
                          scratch.LSTM(I, 16, seed=3).state_dict()["weight_ih_l0"])
    fast = scratch.fast.LSTM(I, 16, num_layers=2, bidirectional=True, seed=0)
    assert repr(fast) == repr(model)  # the same layer, the same initial weights for a seed
    assert all(np.array_equal(p, fast.parameters()[k]) for k, p in model.parameters().items())


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_textbook_layers_run_the_step_functions(kind):
    """A breakpoint in rnn_step / lstm_step / gru_step (or their backward) stops once per time
    step of every layer and direction: the textbook layers call them, the tuned ones do not."""
    import sys

    from rnnkit.scratch import gru_cell, lstm_cell, rnn_cell

    module = {"rnn": rnn_cell, "lstm": lstm_cell, "gru": gru_cell}[kind]
    step = getattr(module, f"{kind}_step")
    codes = {step.__code__: "step", getattr(module, f"{kind}_step_backward").__code__: "backward"}

    def count_calls(layer, x):
        calls = {"step": 0, "backward": 0}

        def profile(frame, event, arg):  # what a debugger's breakpoint hooks into: each call's frame
            if event == "call" and frame.f_code in codes:
                calls[codes[frame.f_code]] += 1

        sys.setprofile(profile)
        try:
            out, _, cache = layer.forward(x)
            layer.backward(np.ones_like(out), cache)
        finally:
            sys.setprofile(None)
        return calls

    x = np.random.default_rng(0).standard_normal((T, B, I))
    kw = {"num_layers": 2, "bidirectional": True}
    assert count_calls(SCRATCH[kind](I, H, seed=0, **kw), x) == {"step": T * 4, "backward": T * 4}
    assert count_calls(FAST[kind](I, H, seed=0, **kw), x) == {"step": 0, "backward": 0}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_float32_model_gives_float32_gradients_for_float64_upstream(kind, engine):
    """d_output in another dtype is cast to the model's, so both engines return its dtype."""
    model = ENGINES[engine][kind](I, H, num_layers=2, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I))  # float64, cast on the way in
    out, _, cache = model.forward(x)
    d_x, d_hx, grads = model.backward(np.ones(out.shape, np.float64), cache)
    assert d_x.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    assert all(d.dtype == np.float32 for d in (d_hx if kind == "lstm" else (d_hx,)))
