"""The whole Elman network against rnnkit.nn.Elman (and torch.nn.RNN + a linear map)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scratch_helpers import rel_err

import rnnkit.nn
from rnnkit import scratch

T, B, I, H, O = 6, 3, 5, 7, 4


@pytest.mark.parametrize("nonlinearity,bias", [("tanh", True), ("relu", False)])
def test_elman_matches_rnnkit_nn_elman(nonlinearity, bias):
    model = scratch.Elman(I, H, O, nonlinearity=nonlinearity, bias=bias, seed=0)
    ref = rnnkit.nn.Elman(I, H, O, nonlinearity=nonlinearity, bias=bias, dtype=torch.float64)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    assert list(model.state_dict()) == list(ref.state_dict())
    rng = np.random.default_rng(1)
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    R, Rh = rng.standard_normal((T, B, O)), rng.standard_normal((B, H))
    y, h_n, cache = model.forward(x, h0)
    d_x, d_h0, grads = model.backward(R, cache, Rh)
    tx, th = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    ty, thn = ref(tx, th)
    ((ty * torch.from_numpy(R)).sum() + (thn * torch.from_numpy(Rh)).sum()).backward()
    assert rel_err(y, ty.detach().numpy()) < 1e-12 and rel_err(h_n, thn.detach().numpy()) < 1e-12
    assert rel_err(d_x, tx.grad.numpy()) < 1e-10 and rel_err(d_h0, th.grad.numpy()) < 1e-10
    for name, p in ref.named_parameters():
        assert rel_err(grads[name], p.grad.numpy()) < 1e-10, name


def test_elman_index_inputs_equal_one_hot_and_torch_state_dict_loads():
    ref = rnnkit.nn.Elman(I, H, O, dtype=torch.float64)
    model = scratch.Elman(I, H, O)
    model.load_state_dict(ref.state_dict())  # tensors accepted
    rng = np.random.default_rng(2)
    idx = rng.integers(0, I, (T, B))
    R = rng.standard_normal((T, B, O))
    y_i, _, c_i = model.forward(idx)
    y_h, _, c_h = model.forward(np.eye(I)[idx])
    assert rel_err(y_i, y_h) < 1e-13
    assert rel_err(y_h, ref(torch.from_numpy(np.eye(I)[idx]))[0].detach().numpy()) < 1e-12
    d_x, _, g_i = model.backward(R, c_i)
    _, _, g_h = model.backward(R, c_h)
    assert d_x is None and all(rel_err(g_i[k], g_h[k]) < 1e-12 for k in g_h)


def test_elman_errors():
    model = scratch.Elman(I, H, O)
    with pytest.raises(ValueError, match=r"Expected h0 of size \(3, 7\), got \(1, 3, 7\)"):
        model.forward(np.zeros((T, B, I)), np.zeros((1, B, H)))
    _, _, cache = model.forward(np.zeros((T, B, I)))
    with pytest.raises(ValueError, match=r"Expected \(6, 3, 4\), got \(6, 3, 5\)"):
        model.backward(np.zeros((T, B, O + 1)), cache)
