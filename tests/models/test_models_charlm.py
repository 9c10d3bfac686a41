"""CharLM against torch.nn and against the NumPy engine; state carrying; the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit.models.charlm import CharLM, detach_state, loss_fn
from rnnkit.train.engines import NumpyEngine

V = 11


def reference(model: CharLM, x: torch.Tensor) -> torch.Tensor:
    """The same network written with torch.nn modules only, weights copied from ``model``."""
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[model.cell]
    rnn = cls(model.embed_size, model.hidden_size, model.num_layers)
    rnn.load_state_dict(model.rnn.state_dict())
    emb = torch.nn.Embedding(V, model.embed_size)
    emb.load_state_dict(model.embed.state_dict())
    head = torch.nn.Linear(model.hidden_size, V)
    head.load_state_dict(model.head.state_dict())
    return head(rnn(emb(x))[0])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_charlm_matches_torch_nn(cell):
    torch.manual_seed(0)
    model = CharLM(V, cell=cell, hidden_size=12, num_layers=2, embed_size=5).eval()
    x = torch.randint(0, V, (7, 3))
    logits, state = model(x)
    assert logits.shape == (7, 3, V)
    assert len(state) == (2 if cell == "lstm" else 1) and state[0].shape == (2, 3, 12)
    torch.testing.assert_close(logits, reference(model, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_carried_state_equals_one_long_pass(cell):
    """Truncated BPTT's forward: windows with the state carried give the unbroken sequence's logits."""
    torch.manual_seed(1)
    model = CharLM(V, cell=cell, hidden_size=9, embed_size=4).eval()
    x = torch.randint(0, V, (12, 2))
    whole, _ = model(x)
    state, parts = None, []
    for window in x.split(5):
        out, state = model(window, state)
        state = detach_state(state)
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts), whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_one_hot_model_matches_numpy_engine(cell):
    """embed_size=0 is the NumPy engine's model: its weights load under torch names, same logits."""
    from rnnkit.scratch import NumpyCharLM as ScratchLM

    chars = "abcdefghijk"
    scratch = ScratchLM(chars, 8, cell=cell, num_layers=2, dtype=np.float64, seed=0)
    model = CharLM(V, cell=cell, hidden_size=8, num_layers=2, embed_size=0).double().eval()
    weights = {NumpyEngine.torch_name(k): torch.from_numpy(v) for k, v in scratch.state_dict().items()}
    model.load_state_dict(weights)
    x = np.random.default_rng(0).integers(0, V, size=(6, 3))
    expected, _, _ = scratch.forward(x)
    logits, _ = model(torch.from_numpy(x))
    np.testing.assert_allclose(logits.detach().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_loss_is_mean_negative_log_likelihood_in_float32():
    torch.manual_seed(2)
    logits = torch.randn(4, 3, V)
    y = torch.randint(0, V, (4, 3))
    expected = -torch.log_softmax(logits.double(), -1).gather(-1, y[..., None]).mean()
    torch.testing.assert_close(loss_fn(logits, y).double(), expected, rtol=1e-6, atol=1e-7)
    assert loss_fn(logits.bfloat16(), y).dtype == torch.float32


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="cell must be one of rnn, lstm, gru"):
        CharLM(V, cell="transformer")
    with pytest.raises(ValueError, match="hidden_size must be greater than zero, got 0"):
        CharLM(V, hidden_size=0)
    with pytest.raises(ValueError, match=r"x must be \(T, B\)"):
        CharLM(V, hidden_size=4)(torch.zeros(3, dtype=torch.long))
