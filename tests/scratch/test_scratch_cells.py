"""Single-step cells: against torch.nn cells (float64 autograd), and tied to both engines' layer loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scratch_helpers import rel_err, to_torch_state

from rnnkit import scratch

B, I, H, P = 3, 4, 5, 2


def _torch_cell(kind, **kw):
    cls = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[kind]
    return cls(I, H, **kw).double()


@pytest.mark.parametrize("kind,kw", [("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("lstm", {}),
                                     ("gru", {}), ("gru", {"bias": False})])
def test_cell_step_matches_torch_cell(kind, kw):
    cell = {"rnn": scratch.RNNCell, "lstm": scratch.LSTMCell, "gru": scratch.GRUCell}[kind](I, H, seed=0, **kw)
    ref = _torch_cell(kind, **kw)
    ref.load_state_dict(to_torch_state(cell))
    rng = np.random.default_rng(0)
    x, h, c = rng.standard_normal((B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    dh, dc = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    if kind == "lstm":
        (h1, c1), cache = cell.forward(x, (h, c))
        d_x, (d_h, d_c), grads = cell.backward((dh, dc), cache)
        rh, rc = ref(tx, (th, tc))
        ((rh * torch.tensor(dh)).sum() + (rc * torch.tensor(dc)).sum()).backward()
        assert rel_err(c1, rc.detach().numpy()) < 1e-12 and rel_err(d_c, tc.grad.numpy()) < 1e-12
    else:
        h1, cache = cell.forward(x, h)
        d_x, d_h, grads = cell.backward(dh, cache)
        rh = ref(tx, th)
        (rh * torch.tensor(dh)).sum().backward()
    assert rel_err(h1, rh.detach().numpy()) < 1e-12
    assert rel_err(d_x, tx.grad.numpy()) < 1e-12 and rel_err(d_h, th.grad.numpy()) < 1e-12
    for name, p in ref.named_parameters():
        assert rel_err(grads[name], p.grad.numpy()) < 1e-12, name


def _step_fns(kind, nonlinearity="tanh"):
    if kind == "rnn":
        return (lambda x, s, p: scratch.rnn_step(x, s, p, nonlinearity)), scratch.rnn_step_backward
    if kind == "lstm":
        return scratch.lstm_step, scratch.lstm_step_backward
    return scratch.gru_step, scratch.gru_step_backward


@pytest.mark.parametrize("engine", ["textbook", "fast"])
@pytest.mark.parametrize("kind,proj", [("rnn", 0), ("lstm", 0), ("lstm", P), ("gru", 0)])
def test_layer_loop_equals_chained_steps(kind, proj, engine):
    """A layer's loop (textbook or speed-tuned) equals the readable step, applied T times, both ways."""
    T = 4
    kw = {"proj_size": proj} if proj else {}
    layers = scratch if engine == "textbook" else scratch.fast
    layer = {"rnn": layers.RNN, "lstm": layers.LSTM, "gru": layers.GRU}[kind](I, H, seed=2, **kw)
    p = {k[: -len("_l0")]: v for k, v in layer.parameters().items()}
    step, step_back = _step_fns(kind)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I))
    H_out = proj or H
    d_out = rng.standard_normal((T, B, H_out))
    out, _, cache = layer.forward(x)
    d_x, _, grads = layer.backward(d_out, cache)
    state = (np.zeros((B, H_out)), np.zeros((B, H))) if kind == "lstm" else np.zeros((B, H))
    caches, outs = [], []
    for t in range(T):
        state, c = step(x[t], state, p)
        caches.append(c)
        outs.append(state[0] if kind == "lstm" else state)
    assert rel_err(np.stack(outs), out) < 1e-13
    d_state = (np.zeros((B, H_out)), np.zeros((B, H))) if kind == "lstm" else np.zeros((B, H))
    total = {k: np.zeros_like(v) for k, v in p.items()}
    d_xs = [None] * T
    for t in range(T - 1, -1, -1):
        if kind == "lstm":
            d_state = (d_state[0] + d_out[t], d_state[1])
        else:
            d_state = d_state + d_out[t]
        d_xs[t], d_state, g = step_back(d_state, caches[t])
        for k in g:
            total[k] += g[k]
    assert rel_err(np.stack(d_xs), d_x) < 1e-12
    for k in total:
        assert rel_err(total[k], grads[k + "_l0"]) < 1e-12, k


@pytest.mark.parametrize("kind,proj,nl", [("rnn", 0, "tanh"), ("rnn", 0, "relu"), ("lstm", 0, "tanh"),
                                          ("lstm", P, "tanh"), ("gru", 0, "tanh")])
def test_cell_steps_pass_gradcheck(kind, proj, nl):
    """Every step's backward against finite differences: parameters, input and previous state."""
    rng = np.random.default_rng(3)
    G = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    H_out = proj or H
    params = {
        "weight_ih": rng.uniform(-0.5, 0.5, (G * H, I)), "weight_hh": rng.uniform(-0.5, 0.5, (G * H, H_out)),
        "bias_ih": rng.uniform(-0.5, 0.5, G * H), "bias_hh": rng.uniform(-0.5, 0.5, G * H),
    }
    if proj:
        params["weight_hr"] = rng.uniform(-0.5, 0.5, (proj, H))
    params["x"] = rng.standard_normal((B, I))
    params["h"] = rng.standard_normal((B, H_out))
    if kind == "lstm":
        params["c"] = rng.standard_normal((B, H))
    R = [rng.standard_normal((B, H_out)), rng.standard_normal((B, H))]
    step, step_back = _step_fns(kind, nl)

    def f(p):
        state = (p["h"], p["c"]) if kind == "lstm" else p["h"]
        new, cache = step(p["x"], state, p)
        if kind == "lstm":
            loss = (new[0] * R[0]).sum() + (new[1] * R[1]).sum()
            d_x, (d_h, d_c), grads = step_back((R[0], R[1]), cache)
            grads["c"] = d_c
        else:
            loss = (new * R[0]).sum()
            d_x, d_h, grads = step_back(R[0], cache)
        grads.update(x=d_x, h=d_h)
        return loss, grads

    report = scratch.gradcheck(f, params)
    assert set(report) == set(params)
    assert max(report.values()) < 1e-6, report
