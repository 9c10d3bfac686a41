"""``step()`` without autograd (streaming, the sampler): the path it takes and its numbers.

One step with no gradient wanted takes the compiled kernel wherever the layer's forward would run
a fast kernel, and for the stock LSTM too (``nn/sequence.py::step_path``). Each layer below is
stepped through a sequence under ``torch.no_grad`` and compared, in float64 to 1e-10, with the
readable loop (``backend="loop"``, the same weights) over the whole sequence: outputs and final
states, with the compiled kernels on and off (``eager_or_compiled``).
"""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.nn.paths import COMPILED, LOOP
from rnnkit.nn.sequence import step_path

D64 = torch.float64
T, B, I, H = 5, 3, 4, 6

LAYERS = {
    "LSTM": lambda **kw: rnnkit.LSTM(I, H, **kw),
    "GRU": lambda **kw: rnnkit.GRU(I, H, **kw),
    "RNN-tanh": lambda **kw: rnnkit.RNN(I, H, **kw),
    "RNN-relu": lambda **kw: rnnkit.RNN(I, H, nonlinearity="relu", **kw),
    "FusedLSTM": lambda **kw: rnnkit.FusedLSTM(I, H, **kw),
    "FusedGRU": lambda **kw: rnnkit.FusedGRU(I, H, **kw),
    "FusedRNN": lambda **kw: rnnkit.FusedRNN(I, H, **kw),
    "LayerNormLSTM": lambda **kw: rnnkit.LayerNormLSTM(I, H, **kw),
    "LayerNormGRU": lambda **kw: rnnkit.LayerNormGRU(I, H, **kw),
}
STOCK = ("LSTM", "GRU", "RNN-tanh", "RNN-relu")


def pair(name, seed=0):
    """(the layer, the same weights on the readable loop), two layers deep, float64."""
    torch.manual_seed(seed)
    m = LAYERS[name](num_layers=2, dtype=D64)
    with torch.no_grad():  # layer-norm gains and shifts away from 1 and 0, so each one matters
        for n, p in m.named_parameters():
            if n.startswith("ln_"):
                p.add_(0.3 * torch.randn_like(p))
    ref = LAYERS[name](num_layers=2, dtype=D64, backend="loop")
    ref.load_state_dict(m.state_dict())
    return m.eval(), ref.eval()


def states(s):
    return s if isinstance(s, tuple) else (s,)


@pytest.mark.parametrize("name", list(LAYERS))
def test_step_without_grad_equals_the_readable_loop(eager_or_compiled, name):
    m, ref = pair(name)
    x = torch.randn(T, B, I, dtype=D64)
    with torch.no_grad():
        want, want_state = ref(x)
        if name in STOCK:  # the stock layers leave their forward for one step
            path = step_path(m, x[0])
            # only the LSTM leaves torch's kernel, which repacks its weights at every call
            expected = (COMPILED if eager_or_compiled else LOOP) if name == "LSTM" else None
            assert path == expected, path
        s, ys = None, []
        for t in range(T):
            y, s = m.step(x[t], s)
            ys.append(y)
    torch.testing.assert_close(torch.stack(ys), want, rtol=1e-10, atol=1e-10)
    for a, b in zip(states(s), states(want_state)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    with torch.no_grad():  # one unbatched step: (I,) -> (H,)
        y1, s1 = m.step(x[0, 0])
        y1_ref, _ = ref(x[:1, :1])
    assert y1.shape == (H,) and all(t.shape == (2, H) for t in states(s1))
    torch.testing.assert_close(y1, y1_ref[0, 0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", STOCK)
def test_step_with_grad_takes_forward(name):
    """Where a gradient is wanted, step() is forward on one step (autograd records it)."""
    m, _ = pair(name)
    x = torch.randn(B, I, dtype=D64)
    assert step_path(m, x) is None
    y, _ = m.step(x)
    assert y.requires_grad


def test_char_lm_step_equals_forward(eager_or_compiled):
    """CharLM.step (the sampler's call) against forward over the same characters."""
    from rnnkit.models.charlm import CharLM

    torch.manual_seed(0)
    model = CharLM(11, cell="lstm", hidden_size=8, num_layers=2, embed_size=5).double().eval()
    ids = torch.randint(0, 11, (7, 2))
    with torch.no_grad():
        want, want_state = model(ids)
        s, got = None, []
        for t in range(7):
            logits, s = model.step(ids[t], s)
            got.append(logits)
    torch.testing.assert_close(torch.stack(got), want, rtol=1e-10, atol=1e-10)
    for a, b in zip(s, want_state):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
