"""Losses, optimisers and clipping against torch.nn.functional, torch.optim and torch.nn.utils."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scratch_helpers import rel_err

from rnnkit import scratch


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_cross_entropy_matches_torch(reduction, ignore_index):
    rng = np.random.default_rng(0)
    T, B, V = 5, 3, 7
    logits = rng.standard_normal((T, B, V)) * 3
    logits[0, 0, 1] = 800.0  # a huge logit: the shifted softmax must not overflow
    targets = rng.integers(0, V, (T, B))
    targets[1, :] = ignore_index  # padding (ignore_index=2 also ignores real class-2 targets, as torch)
    loss, d = scratch.cross_entropy(logits, targets, ignore_index=ignore_index, reduction=reduction)
    tl = torch.tensor(logits, requires_grad=True)
    ref = F.cross_entropy(tl.reshape(-1, V), torch.from_numpy(targets).reshape(-1),
                          ignore_index=ignore_index, reduction=reduction)
    ref.backward()
    assert np.isfinite(loss) and abs(loss - ref.item()) < 1e-12 * abs(ref.item())
    assert rel_err(d, tl.grad.numpy()) < 1e-12


def test_cross_entropy_all_ignored_is_nan_like_torch_and_errors():
    loss, d = scratch.cross_entropy(np.zeros((2, 3)), np.array([-100, -100]))
    assert np.isnan(loss) and torch.isnan(F.cross_entropy(torch.zeros(2, 3), torch.tensor([-100, -100])))
    assert not d.any()
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\)"):
        scratch.cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(TypeError, match="integer class indices"):
        scratch.cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"Expected \(2,\), got \(3,\)"):
        scratch.cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_matches_torch(reduction):
    rng = np.random.default_rng(1)
    pred, target = rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3, 2))
    loss, d = scratch.mse(pred, target, reduction=reduction)
    tp = torch.tensor(pred, requires_grad=True)
    ref = F.mse_loss(tp, torch.from_numpy(target), reduction=reduction)
    ref.backward()
    assert abs(loss - ref.item()) < 1e-12 * ref.item() and rel_err(d, tp.grad.numpy()) < 1e-12
    with pytest.raises(ValueError, match="reduction must be one of mean, sum; got 'none'"):
        scratch.mse(pred, target, reduction="none")


OPTIMIZERS = [
    (scratch.SGD, torch.optim.SGD, {"lr": 0.1}),
    (scratch.SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    (scratch.SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    (scratch.Adagrad, torch.optim.Adagrad, {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    (scratch.Adagrad, torch.optim.Adagrad, {"lr": 0.1, "weight_decay": 0.01}),
    (scratch.Adam, torch.optim.Adam, {"lr": 0.01}),
    (scratch.Adam, torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
]


@pytest.mark.parametrize("ours,theirs,kw", OPTIMIZERS, ids=[f"{o.__name__}-{i}" for i, (o, _, _) in enumerate(OPTIMIZERS)])
def test_optimizer_matches_torch_step_by_step(ours, theirs, kw):
    rng = np.random.default_rng(2)
    params = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt, topt = ours(params, **kw), theirs(list(tparams.values()), **kw)
    for step in range(6):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        if step == 3:
            del grads["b"]  # a parameter without a gradient is left alone, as with .grad = None
        for k, p in tparams.items():
            p.grad = torch.from_numpy(grads[k].copy()) if k in grads else None
        opt.step(grads)
        topt.step()
        for k in params:
            assert rel_err(params[k], tparams[k].detach().numpy()) < 1e-13, (step, k)


def test_optimizer_errors():
    with pytest.raises(TypeError, match="non-empty dict"):
        scratch.Adam([np.zeros(3)])
    opt = scratch.SGD({"w": np.zeros(3)}, lr=0.1)
    with pytest.raises(KeyError, match="unknown parameters"):
        opt.step({"v": np.zeros(3)})
    with pytest.raises(ValueError, match=r"shape \(3,\), got \(4,\)"):
        opt.step({"w": np.zeros(4)})


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(max_norm):
    rng = np.random.default_rng(3)
    grads = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    tp = [torch.zeros(3, 4, dtype=torch.float64, requires_grad=True),
          torch.zeros(5, dtype=torch.float64, requires_grad=True)]
    for p, g in zip(tp, grads.values()):
        p.grad = torch.from_numpy(g.copy())
    norm = scratch.clip_grad_norm(grads, max_norm)
    ref = torch.nn.utils.clip_grad_norm_(tp, max_norm)
    assert abs(norm - ref.item()) < 1e-12 * ref.item()
    for p, g in zip(tp, grads.values()):
        assert rel_err(g, p.grad.numpy()) < 1e-13


def test_clip_grad_value_matches_torch():
    rng = np.random.default_rng(4)
    g = rng.standard_normal((4, 5)) * 3
    tp = torch.zeros(4, 5, dtype=torch.float64, requires_grad=True)
    tp.grad = torch.from_numpy(g.copy())
    scratch.clip_grad_value({"g": g}, 1.5)
    torch.nn.utils.clip_grad_value_([tp], 1.5)
    np.testing.assert_array_equal(g, tp.grad.numpy())
    assert np.abs(g).max() == 1.5


@pytest.mark.parametrize("ours,theirs,kw", [OPTIMIZERS[3], OPTIMIZERS[6]], ids=["Adagrad", "Adam"])
def test_optimizer_float32_matches_torch(ours, theirs, kw):
    """In float32 the in-place updates stay float32 and agree with torch.optim in float32."""
    rng = np.random.default_rng(6)
    params = {"w": rng.standard_normal((3, 4)).astype(np.float32)}
    tparam = torch.tensor(params["w"], requires_grad=True)
    opt, topt = ours(params, **kw), theirs([tparam], **kw)
    for step in range(5):
        g = rng.standard_normal((3, 4)).astype(np.float32)
        tparam.grad = torch.from_numpy(g.copy())
        opt.step({"w": g})
        topt.step()
        assert params["w"].dtype == np.float32
        assert rel_err(params["w"], tparam.detach().numpy()) < 1e-6, step
