"""Opt-in torch.compile: the compiled MinGRU / MinLSTM give the eager numbers and gradients.

Compilation takes tens of seconds on CPU, so the parity check is marked slow
(``pytest -m slow tests/nn/test_nn_mingru_compile.py``); the argument check runs always.
"""

from __future__ import annotations

import pytest
import torch

from rnnkit.nn.mingru import MinGRU, MinLSTM, compile_min_rnn


def test_rejects_other_modules():
    with pytest.raises(TypeError, match="expects a MinGRU or MinLSTM, got LSTM"):
        compile_min_rnn(torch.nn.LSTM(3, 4))


@pytest.mark.slow
@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_compiled_equals_eager(cls):
    torch.manual_seed(0)
    eager = cls(4, 8, num_layers=2)
    compiled = cls(4, 8, num_layers=2)
    compiled.load_state_dict(eager.state_dict())
    assert compile_min_rnn(compiled) is compiled
    for T in (37, 64):  # a second length must not break (dynamic shapes)
        x = torch.randn(T, 3, 4, requires_grad=True)
        out_e, h_e = eager(x)
        out_c, h_c = compiled(x)
        torch.testing.assert_close(out_c, out_e, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(h_c, h_e, rtol=1e-5, atol=1e-6)
        g_e = torch.autograd.grad(out_e.square().sum(), [x, *eager.parameters()])
        g_c = torch.autograd.grad(out_c.square().sum(), [x, *compiled.parameters()])
        for a, b in zip(g_c, g_e):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
