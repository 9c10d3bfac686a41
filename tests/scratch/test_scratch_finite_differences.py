"""Every sequence layer and network passes gradcheck (float64 finite differences, error < 1e-6),
and gradcheck itself catches wrong gradients."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit import scratch

T, B, I, H = 4, 2, 3, 4

LAYERS = [
    (scratch.RNN, {"num_layers": 2, "bidirectional": True}),
    # relu has a kink at 0, where finite differences are meaningless: seed 4 keeps every
    # pre-activation at least 0.03 from it, well outside the stencil (±2e-3 on the weights)
    (scratch.RNN, {"nonlinearity": "relu", "seed": 4}),
    (scratch.LSTM, {"num_layers": 2, "bidirectional": True, "proj_size": 2}),
    (scratch.LSTM, {"bias": False}),
    (scratch.GRU, {"num_layers": 2, "bidirectional": True}),
]


@pytest.mark.parametrize("cls,kw", LAYERS, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(LAYERS)])
def test_sequence_layer_passes_gradcheck(cls, kw):
    model = cls(I, H, **{"seed": 0, **kw})
    rng = np.random.default_rng(1)
    L = model.num_layers * model.num_directions
    lstm = cls is scratch.LSTM
    inputs = {"x": rng.standard_normal((T, B, I)), "h0": rng.standard_normal((L, B, model.output_size))}
    if lstm:
        inputs["c0"] = rng.standard_normal((L, B, H))
    params = {**model.parameters(), **inputs}  # the model's own arrays: perturbed in place
    out, h_n, cache = model.forward(inputs["x"], (inputs["h0"], inputs["c0"]) if lstm else inputs["h0"])
    R = rng.standard_normal(out.shape)
    Rh = rng.standard_normal(h_n[0].shape if lstm else h_n.shape)
    Rc = rng.standard_normal(h_n[1].shape) if lstm else None

    def loss(p):
        hx = (p["h0"], p["c0"]) if lstm else p["h0"]
        out, h_n, _ = model.forward(p["x"], hx)
        if lstm:
            return (out * R).sum() + (h_n[0] * Rh).sum() + (h_n[1] * Rc).sum()
        return (out * R).sum() + (h_n * Rh).sum()

    d_x, d_hx, grads = model.backward(R, cache, (Rh, Rc) if lstm else Rh)
    grads = {**grads, "x": d_x}
    if lstm:
        grads.update(h0=d_hx[0], c0=d_hx[1])
    else:
        grads["h0"] = d_hx
    report = scratch.gradcheck(loss, params, grads)
    assert set(report) == set(params)
    assert max(report.values()) < 1e-6, report


def test_elman_network_passes_gradcheck():
    model = scratch.Elman(I, H, 3, seed=0)
    rng = np.random.default_rng(2)
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    R, Rh = rng.standard_normal((T, B, 3)), rng.standard_normal((B, H))
    y, h_n, cache = model.forward(x, h0)
    d_x, d_h0, grads = model.backward(R, cache, Rh)
    params = {**model.parameters(), "x": x, "h0": h0}

    def loss(p):
        y, h_n, _ = model.forward(p["x"], p["h0"])
        return (y * R).sum() + (h_n * Rh).sum()

    report = scratch.gradcheck(loss, params, {**grads, "x": d_x, "h0": d_h0})
    assert max(report.values()) < 1e-6, report


@pytest.mark.parametrize("model_cls", [scratch.NumpyCharLM, scratch.fast.FastNumpyCharLM])
def test_charlm_loss_passes_gradcheck(model_cls):
    model = model_cls("abcde", 4, cell="gru", num_layers=2, dtype=np.float64, seed=0)
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 5, (T, B)), rng.integers(0, 5, (T, B))
    report = scratch.gradcheck(lambda p: model.loss_and_grads(x, y)[:2], model.parameters())
    assert max(report.values()) < 1e-6, report


def test_gradcheck_catches_a_wrong_gradient_and_samples_entries():
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    x = rng.standard_normal((5, 3))

    def f(p):
        y = np.tanh(x @ p["w"] + p["b"])  # (5, 4)
        d = 1 - y * y
        return y.sum(), {"w": x.T @ d, "b": d.sum(0)}

    good = scratch.gradcheck(f, params)
    assert max(good.values()) < 1e-8

    def wrong(p):
        loss, g = f(p)
        g["b"] = g["b"] * 1.001  # a 0.1% error in one gradient
        return loss, g

    bad = scratch.gradcheck(wrong, params, num_checks=2)
    assert bad["w"] < 1e-8 and bad["b"] > 5e-4  # reported on the right array only


def test_gradcheck_rejects_float32_and_missing_gradients():
    with pytest.raises(TypeError, match="Expected float64 for 'w', got float32"):
        scratch.gradcheck(lambda p: (0.0, {"w": p["w"]}), {"w": np.zeros(3, np.float32)})
    with pytest.raises(KeyError, match="no gradient"):
        scratch.gradcheck(lambda p: (0.0, {}), {"w": np.zeros(3)})
