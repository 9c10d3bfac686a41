"""Truncated BPTT equals torch autograd on the same chunking, with detach at the chunk edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scratch_helpers import make_torch_rnn, rel_err, to_torch_state

from rnnkit import scratch

T, B, I, H = 12, 2, 3, 4


def _setup(kind, T=T):
    kw = {"num_layers": 2}
    model = {"lstm": scratch.LSTM, "gru": scratch.GRU}[kind](I, H, seed=0, **kw)
    ref = make_torch_rnn(kind, "torch.nn", I, H, **kw).double()
    ref.load_state_dict(to_torch_state(model))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I))
    R = rng.standard_normal((T, B, H))  # loss = sum_t <out_t, R_t>: every step has its own term

    def loss_fn(out, steps):
        return float((out * R[steps]).sum()), R[steps]

    return model, ref, x, R, loss_fn


def _detach(h):
    return tuple(s.detach() for s in h) if isinstance(h, tuple) else h.detach()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("k", [4, 5])  # 5: the last chunk is shorter
def test_chunked_bptt_equals_autograd_with_detach(kind, k):
    model, ref, x, R, loss_fn = _setup(kind)
    steps = list(scratch.bptt_chunks(model, x, loss_fn, k))
    assert [s.steps for s in steps] == [slice(a, min(a + k, T)) for a in range(0, T, k)]
    total = {name: sum(s.grads[name] for s in steps) for name in steps[0].grads}
    # torch: the same chunks, state carried and detached at each edge, one backward at the end
    tx, tR, h, loss = torch.from_numpy(x), torch.from_numpy(R), None, 0.0
    for a in range(0, T, k):
        out, h = ref(tx[a : a + k], h)
        loss = loss + (out * tR[a : a + k]).sum()
        h = _detach(h)
    loss.backward()
    assert abs(sum(s.loss for s in steps) - loss.item()) < 1e-10 * abs(loss.item())
    for name, p in ref.named_parameters():
        assert rel_err(total[name], p.grad.numpy()) < 1e-10, name
    # the state handed back is the carried one: it equals a full forward's final state
    full = model.forward(x)[1]
    last = steps[-1].state
    np.testing.assert_allclose(last[0] if kind == "lstm" else last, full[0] if kind == "lstm" else full,
                               rtol=1e-12, atol=1e-14)


def _torch_tbptt(ref, x, R, k1, k2):
    """TBPTT(k1, k2) in torch: at each update time e, rerun the last k2 steps from the detached
    state at e - k2, count the losses since the previous update, backpropagate."""
    tx, tR = torch.from_numpy(x), torch.from_numpy(R)
    T = len(x)
    with torch.no_grad():  # the states the stream passes through, to start each window from
        states = [None]
        h = None
        for t in range(T):
            _, h = ref(tx[t : t + 1], h)
            states.append(h)
    ends = list(range(k1, T + 1, k1)) + ([T] if T % k1 else [])
    per_update, last = [], 0
    for e in ends:
        ref.zero_grad()
        s = max(0, e - k2)
        out, _ = ref(tx[s:e], states[s])
        loss = (out[last - s :] * tR[last:e]).sum()
        loss.backward()
        per_update.append((loss.item(), {n: p.grad.numpy().copy() for n, p in ref.named_parameters()}))
        last = e
    return per_update


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("k1,k2,T_", [(2, 5, 12), (3, 6, 12), (4, 6, 10), (3, 3, 12)])
def test_tbptt_k1_k2_equals_autograd_with_detach(kind, k1, k2, T_):
    model, ref, x, R, loss_fn = _setup(kind, T_)
    ours = list(scratch.tbptt(model, x, loss_fn, k1, k2))
    theirs = _torch_tbptt(ref, x, R, k1, k2)
    assert len(ours) == len(theirs)
    for step, (loss, grads) in zip(ours, theirs):
        assert abs(step.loss - loss) <= 1e-10 * max(1.0, abs(loss))
        for name in grads:
            assert rel_err(step.grads[name], grads[name]) < 1e-10, (step.steps, name)


def test_tbptt_with_k1_equal_k2_is_the_chunked_form():
    model, _, x, _, loss_fn = _setup("gru")
    a = list(scratch.tbptt(model, x, loss_fn, 4, 4))
    b = list(scratch.bptt_chunks(model, x, loss_fn, 4))
    for sa, sb in zip(a, b):
        assert sa.steps == sb.steps and abs(sa.loss - sb.loss) < 1e-12
        assert all(rel_err(sa.grads[n], sb.grads[n]) < 1e-12 for n in sb.grads)


def test_tbptt_on_the_elman_network_with_index_inputs():
    """Any scratch sequence model works: the Elman network on a stream of indices."""
    model = scratch.Elman(5, H, 5, seed=0)
    idx = np.random.default_rng(0).integers(0, 5, (T + 1, B))
    x, y = idx[:-1], idx[1:]

    def loss_fn(out, steps):
        return scratch.cross_entropy(out, y[steps], reduction="sum")

    steps = list(scratch.tbptt(model, x, loss_fn, 3, 6))
    assert [s.steps for s in steps] == [slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12)]
    assert all(set(s.grads) == set(model.parameters()) for s in steps)


def test_tbptt_rejects_k2_smaller_than_k1():
    model, _, x, _, loss_fn = _setup("gru")
    with pytest.raises(ValueError, match="Expected k2 >= 4, got k2=2"):
        next(scratch.tbptt(model, x, loss_fn, 4, 2))
    with pytest.raises(ValueError, match="k must be greater than zero, got 0"):
        next(scratch.bptt_chunks(model, x, loss_fn, 0))
