"""The readable loop: finite differences through every layer on it, O(T) backward, stepping."""

from __future__ import annotations

import pytest
import torch
from test_nn_cells import D64, B, H, I, T
from torch.autograd import gradcheck

import rnnkit


@pytest.mark.parametrize("cls", [rnnkit.RNN, rnnkit.GRU, rnnkit.LSTM])
def test_layer_stepping_equals_whole_sequence(cls):
    torch.manual_seed(0)
    m = cls(I, H, num_layers=2, batch_first=True, dtype=D64)
    x = torch.randn(B, T, I, dtype=D64)
    out, state = m(x)
    s, ys = None, []
    for t in range(T):
        y, s = m.step(x[:, t], s)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), out, rtol=1e-12, atol=1e-12)
    for a, b in zip(s if isinstance(s, tuple) else (s,), state if isinstance(state, tuple) else (state,)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    y1, _ = m.step(x[0, 0])  # unbatched step
    assert y1.shape == (H,)


@pytest.mark.parametrize("cls,extra", [(rnnkit.RNN, {}), (rnnkit.GRU, {}), (rnnkit.LSTM, {}),
                                       (rnnkit.LSTM, {"proj_size": 2})])
def test_gradcheck_loop_path(cls, extra):
    torch.manual_seed(0)
    m = cls(3, 4, num_layers=2, bidirectional=True, backend="loop", dtype=D64, **extra)
    params = list(m.parameters())
    names = [n for n, _ in m.named_parameters()]
    x = torch.randn(4, 2, 3, dtype=D64, requires_grad=True)
    lengths = torch.tensor([4, 2])

    def f(x, *ps):
        out, st = torch.func.functional_call(m, dict(zip(names, ps)), (x,), {"lengths": lengths})
        st = st if isinstance(st, tuple) else (st,)
        return (out,) + st

    assert gradcheck(f, (x, *[p.detach().requires_grad_() for p in params]), eps=1e-6, atol=1e-6, fast_mode=True)


def test_loop_backward_is_linear_in_T():
    """The loop splits the input projection with unbind, never by per-step indexing."""
    m = rnnkit.LSTM(I, H, backend="loop")
    out, _ = m(torch.randn(T, B, I, requires_grad=True))
    seen, stack = set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack += [f for f, _ in fn.next_functions]
    kinds = {type(fn).__name__ for fn in seen}
    assert "UnbindBackward0" in kinds
    assert "SelectBackward0" not in kinds
