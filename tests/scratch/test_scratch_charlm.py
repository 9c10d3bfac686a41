"""The NumPy character language model: its loss falls on real text, it samples text, and both the
textbook model (NumpyCharLM) and its tuned twin (fast.FastNumpyCharLM) equal torch autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scratch_helpers import CORPUS, rel_err

from rnnkit import scratch
from rnnkit.scratch import charlm


@pytest.fixture(scope="module")
def text():
    if not CORPUS.exists():
        pytest.skip(f"corpus not found at {CORPUS}")
    return CORPUS.read_text(encoding="utf-8")[:30_000]


@pytest.fixture(scope="module")
def trained(text):
    return charlm.fit(text, hidden_size=64, seq_len=25, batch_size=32, steps=150, lr=1e-2, seed=0)


def test_loss_falls_on_real_text(trained, text):
    losses = trained.losses
    V = trained.model.vocab_size
    assert len(losses) == 150
    assert abs(np.mean(losses[:3]) - math.log(V)) < 0.3  # starts near uniform guessing
    assert np.mean(losses[-10:]) < np.mean(losses[:3]) - 1.2  # ~4.1 -> below ~2.9 nats/char
    held_out = CORPUS.read_text(encoding="utf-8")[30_000:36_000]
    held_out = "".join(ch for ch in held_out if ch in trained.model.stoi)
    assert charlm.evaluate(trained.model, held_out, seq_len=50, batch_size=8) < math.log(V) - 1.0


def test_samples_text(trained):
    model = trained.model
    s = model.sample(200, prime="ROMEO:", temperature=0.8, seed=1)
    assert isinstance(s, str) and len(s) == 200 and set(s) <= set(model.chars)
    assert s == model.sample(200, prime="ROMEO:", temperature=0.8, seed=1)  # seeded
    assert " " in s  # it has learned at least that words are separated by spaces
    cold = model.sample(300, temperature=0.05, seed=2)
    hot = model.sample(300, temperature=5.0, seed=2)
    assert len(set(cold)) < len(set(hot))  # low temperature concentrates on likely characters
    assert len(model.sample(5)) == 5
    with pytest.raises(ValueError, match="temperature must be greater than zero, got 0.0"):
        model.sample(5, temperature=0.0)


@pytest.mark.parametrize("model_cls", [scratch.NumpyCharLM, scratch.fast.FastNumpyCharLM])
def test_model_api_and_errors(model_cls):
    model = model_cls("abc", 8, cell="lstm", num_layers=2, seed=0)
    assert model.decode(model.encode("cab")) == "cab"
    again = model_cls(**model.config())
    again.load_state_dict(model.state_dict())
    x = model.encode("abcab").reshape(-1, 1)
    assert np.array_equal(again.forward(x)[0], model.forward(x)[0])
    loss, grads, state = model.loss_and_grads(x[:-1], x[1:])
    assert set(grads) == set(model.parameters()) and len(state) == 2
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.encode("abd")
    with pytest.raises(ValueError, match="cell must be one of"):
        model_cls("abc", cell="transformer")
    with pytest.raises(ValueError, match="text too short"):
        charlm.fit("abcabc", batch_size=4, seq_len=25, steps=1)


@pytest.mark.parametrize("model_cls", [scratch.NumpyCharLM, scratch.fast.FastNumpyCharLM])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_loss_and_grads_match_torch(cell, dtype, tol, model_cls):
    """The output layer + softmax loss (textbook, or fused in the tuned model), with a carried
    state, against torch.nn autograd."""
    V, H, T, B = 7, 5, 6, 3
    model = model_cls("abcdefg", H, cell=cell, dtype=dtype, seed=1)
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    h0 = rng.standard_normal((1, B, H)).astype(dtype)
    state = (h0, h0 * 0.5) if cell == "lstm" else h0
    loss, grads, state_T = model.loss_and_grads(x, y, state)

    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    rnn = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](V, H).to(tdtype)
    head = torch.nn.Linear(H, V).to(tdtype)
    params = model.parameters()
    rnn.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items() if k[-2:] == "l0"})
    head.load_state_dict({"weight": torch.from_numpy(params["weight_ho"].copy()),
                          "bias": torch.from_numpy(params["bias_ho"].copy())})
    one_hot = torch.nn.functional.one_hot(torch.from_numpy(x), V).to(tdtype)  # (T, B, V)
    t_state = tuple(torch.from_numpy(s) for s in state) if cell == "lstm" else torch.from_numpy(h0)
    out, t_state_T = rnn(one_hot, t_state)
    t_loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, V), torch.from_numpy(y).reshape(-1))
    t_loss.backward()
    assert abs(loss - t_loss.item()) < tol * t_loss.item()
    t_grads = {k: p.grad for k, p in rnn.named_parameters()}
    t_grads.update(weight_ho=head.weight.grad, bias_ho=head.bias.grad)
    assert list(grads) == list(params)  # every parameter, in the state dict's order
    for name, g in grads.items():
        assert g.dtype == dtype, name
        assert rel_err(g, t_grads[name].numpy()) < tol, name
    h_T = state_T[0] if cell == "lstm" else state_T
    t_h_T = t_state_T[0] if cell == "lstm" else t_state_T
    assert rel_err(h_T, t_h_T.detach().numpy()) < tol


@pytest.mark.parametrize("model_cls", [scratch.NumpyCharLM, scratch.fast.FastNumpyCharLM])
def test_loss_and_grads_rejects_bad_targets(model_cls):
    model = model_cls("abc", 4, seed=0)
    x = np.zeros((5, 2), dtype=np.int64)
    with pytest.raises(ValueError, match=r"y_idx must lie in \[0, 3\), got min 3, max 3"):
        model.loss_and_grads(x, np.full((5, 2), 3))
    with pytest.raises(ValueError, match=r"Expected \(5, 2\), got \(5, 3\)"):
        model.loss_and_grads(x, np.zeros((5, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="y_idx must be integers"):
        model.loss_and_grads(x, np.zeros((5, 2)))
