"""The NumPy character language model: its loss falls on real text and it samples text."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scratch_helpers import CORPUS

from rnnkit import scratch
from rnnkit.scratch import charlm


@pytest.fixture(scope="module")
def text():
    if not CORPUS.exists():
        pytest.skip(f"corpus not found at {CORPUS}")
    return CORPUS.read_text(encoding="utf-8")[:30_000]


@pytest.fixture(scope="module")
def trained(text):
    return charlm.train(text, hidden_size=64, seq_len=25, batch_size=32, steps=150, lr=1e-2, seed=0)


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
    with pytest.raises(ValueError, match="temperature must be > 0"):
        model.sample(5, temperature=0.0)


def test_model_api_and_errors():
    model = scratch.CharLM("abc", 8, cell="lstm", num_layers=2, seed=0)
    assert model.decode(model.encode("cab")) == "cab"
    again = scratch.CharLM(**model.config())
    again.load_state_dict(model.state_dict())
    x = model.encode("abcab").reshape(-1, 1)
    assert np.array_equal(again.forward(x)[0], model.forward(x)[0])
    loss, grads, state = model.loss_and_grads(x[:-1], x[1:])
    assert set(grads) == set(model.parameters()) and len(state) == 2
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.encode("abd")
    with pytest.raises(ValueError, match="cell must be one of"):
        scratch.CharLM("abc", cell="transformer")
    with pytest.raises(ValueError, match="text too short"):
        charlm.train("abcabc", batch_size=4, seq_len=25, steps=1)
