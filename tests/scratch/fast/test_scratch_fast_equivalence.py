"""The speed-tuned engine (rnnkit.scratch.fast) equals the textbook one (rnnkit.scratch) it stands for.

The oracle is the textbook code: layers that call rnn_step / lstm_step / gru_step and their
backward once per time step, the plain softmax cross-entropy, the char LM's unfused head (each of
them tested against torch autograd and finite differences in the other files). On the same
weights, in float64, every forward output, final state, input and initial-state gradient and
parameter gradient must agree: the tolerances here (1e-13 forward, 1e-12 backward, relative to
each reference array's scale) are well inside the 1e-10 the reference tests use, because the two
engines do the same arithmetic in a different order (the disagreement measured is about 5e-16).
"""

from __future__ import annotations

import numpy as np
import pytest
from scratch_helpers import rel_err

from rnnkit import scratch
from rnnkit.scratch import fast, losses

T, B, I, H = 6, 3, 5, 7
FWD, BWD = 1e-13, 1e-12

CONFIGS = [
    ("rnn", {}),
    ("rnn", {"nonlinearity": "relu", "num_layers": 2}),
    ("rnn", {"num_layers": 2, "bidirectional": True, "bias": False}),
    ("lstm", {}),
    ("lstm", {"num_layers": 2, "bidirectional": True, "proj_size": 3}),
    ("lstm", {"num_layers": 3, "proj_size": 2, "bias": False}),
    ("gru", {}),
    ("gru", {"num_layers": 2, "bidirectional": True}),
    ("gru", {"num_layers": 3, "bias": False}),
]
TEXTBOOK = {"rnn": scratch.RNN, "lstm": scratch.LSTM, "gru": scratch.GRU}
TUNED = {"rnn": fast.RNN, "lstm": fast.LSTM, "gru": fast.GRU}


def _parts(state):
    """A state (or its gradient) as a list of arrays: [h] or [h, c]."""
    return list(state) if isinstance(state, tuple) else [state]


def _run(model, x, hx, seed=2):
    """forward with the given initial state, then backward of <out, R> + <state_T, R'>."""
    out, state_T, cache = model.forward(x, hx)
    rng = np.random.default_rng(seed)
    d_out = rng.standard_normal(out.shape).astype(out.dtype)
    d_state = [rng.standard_normal(s.shape).astype(s.dtype) for s in _parts(state_T)]
    d_state = tuple(d_state) if isinstance(state_T, tuple) else d_state[0]
    d_x, d_hx, grads = model.backward(d_out, cache, d_state)
    return out, _parts(state_T), d_x, _parts(d_hx), grads


@pytest.mark.parametrize("index_input", [False, True], ids=["float-input", "index-input"])
@pytest.mark.parametrize("kind,kw", CONFIGS, ids=[f"{k}-{'-'.join(f'{a}={b}' for a, b in kw.items())}" for k, kw in CONFIGS])
def test_tuned_layers_equal_textbook_layers(kind, kw, index_input):
    textbook = TEXTBOOK[kind](I, H, seed=0, **kw)
    tuned = TUNED[kind](I, H, seed=0, **kw)
    for name, p in textbook.parameters().items():  # the same constructor draws the same weights
        np.testing.assert_array_equal(tuned.parameters()[name], p)
    rng = np.random.default_rng(1)
    x = rng.integers(0, I, (T, B)) if index_input else rng.standard_normal((T, B, I))
    L = textbook.num_layers * textbook.num_directions
    h0 = rng.standard_normal((L, B, textbook.output_size))
    hx = (h0, rng.standard_normal((L, B, H))) if kind == "lstm" else h0  # a given initial state
    out, state, d_x, d_hx, grads = _run(textbook, x, hx)
    t_out, t_state, t_d_x, t_d_hx, t_grads = _run(tuned, x, hx)
    assert rel_err(t_out, out) < FWD
    for ref, got in zip(state, t_state, strict=True):  # h_n (and c_n)
        assert rel_err(got, ref) < FWD
    if index_input:
        assert d_x is None and t_d_x is None
    else:
        assert rel_err(t_d_x, d_x) < BWD
    for ref, got in zip(d_hx, t_d_hx, strict=True):  # d h_0 (and d c_0)
        assert rel_err(got, ref) < BWD
    assert list(t_grads) == list(grads) == list(textbook.parameters())
    for name in grads:
        assert rel_err(t_grads[name], grads[name]) < BWD, name


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_tuned_layers_equal_textbook_layers_float32(kind):
    """float32: both round at every operation, in a different order, so they agree to ~1e-7."""
    kw = {"num_layers": 2, "bidirectional": True, **({"proj_size": 3} if kind == "lstm" else {})}
    textbook = TEXTBOOK[kind](I, H, dtype=np.float32, seed=0, **kw)
    tuned = TUNED[kind](I, H, dtype=np.float32, seed=0, **kw)
    x = np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32)
    ref, got = _run(textbook, x, None), _run(tuned, x, None)
    arrays = [(got[0], ref[0]), (got[2], ref[2]), *zip(got[1], ref[1]), *zip(got[3], ref[3])]
    arrays += [(got[4][k], ref[4][k]) for k in ref[4]]
    for a, b in arrays:
        assert a.dtype == b.dtype == np.float32
        assert rel_err(a, b) < 1e-5


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_tuned_char_lm_equals_textbook_char_lm(cell):
    """FastNumpyCharLM (tuned layers, fused output layer + loss) against NumpyCharLM, carried state."""
    V, Hc = 9, 6
    textbook = scratch.NumpyCharLM("abcdefghi", Hc, cell=cell, num_layers=2, dtype=np.float64, seed=4)
    tuned = fast.FastNumpyCharLM("abcdefghi", Hc, cell=cell, num_layers=2, dtype=np.float64, seed=4)
    assert list(tuned.parameters()) == list(textbook.parameters())
    for name, p in textbook.parameters().items():
        np.testing.assert_array_equal(tuned.parameters()[name], p)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    h0 = rng.standard_normal((2, B, Hc))
    state = (h0, 0.5 * h0) if cell == "lstm" else h0
    loss, grads, state_T = textbook.loss_and_grads(x, y, state)
    t_loss, t_grads, t_state_T = tuned.loss_and_grads(x, y, state)
    assert abs(t_loss - loss) < 1e-14 * loss
    assert list(t_grads) == list(grads)
    for name in grads:
        assert rel_err(t_grads[name], grads[name]) < BWD, name
    for got, ref in zip(_parts(t_state_T), _parts(state_T), strict=True):
        assert rel_err(got, ref) < FWD
    # and the forward pass (evaluation, sampling) of the two gives the same logits
    assert rel_err(tuned.forward(x, state)[0], textbook.forward(x, state)[0]) < FWD


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tuned_cross_entropy_equals_textbook(reduction, dtype):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((5, 3, 65)) * 3).astype(dtype)
    logits[0, 0, 1] = 800.0  # a huge logit: both shift by the row max
    targets = rng.integers(0, 65, (5, 3))
    targets[1] = -100  # ignored rows
    loss, d = losses.cross_entropy(logits, targets, reduction=reduction)
    t_loss, t_d = fast.cross_entropy(logits, targets, reduction=reduction)
    tol = 1e-14 if dtype == np.float64 else 1e-6
    assert abs(t_loss - loss) < tol * abs(loss)
    assert t_d.dtype == d.dtype == dtype and rel_err(t_d, d) < 10 * tol
    assert not t_d[1].any()
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 65\)"):  # the same checks
        fast.cross_entropy(logits, np.full((5, 3), 65))
