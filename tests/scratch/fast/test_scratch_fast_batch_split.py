"""A batch split over threads gives the loss, gradients and state of the whole batch in one call."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scratch_helpers import rel_err

from rnnkit.scratch import charlm
from rnnkit.scratch.fast import BatchSplit, FastNumpyCharLM


def _state(rng, cell, B, H):
    h0 = rng.standard_normal((2, B, H))
    return (h0, 0.5 * h0) if cell == "lstm" else h0


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("threads", [2, 3, 16])  # 3 of B=7: uneven slices 2, 3, 2; 16 > B
def test_split_equals_whole_batch(cell, threads):
    V, H, T, B = 6, 5, 4, 7
    model = FastNumpyCharLM("abcdef", H, cell=cell, num_layers=2, dtype=np.float64, seed=3)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    state = _state(rng, cell, B, H)
    loss, grads, state_T = model.loss_and_grads(x, y, state)  # the oracle: tested against torch.nn
    with BatchSplit(threads, min_slice=1) as split:
        s_loss, s_grads, s_state_T = split(model.loss_and_grads, x, y, state)
    assert abs(s_loss - loss) < 1e-12 * loss
    assert list(s_grads) == list(grads)
    for name in grads:
        assert s_grads[name].dtype == grads[name].dtype
        assert rel_err(s_grads[name], grads[name]) < 1e-12, name
    pairs = zip(s_state_T, state_T) if cell == "lstm" else [(s_state_T, state_T)]
    for got, want in pairs:
        assert rel_err(got, want) < 1e-12  # every stream's own state, in order (BLAS rounds B=1 apart)


def test_split_runs_in_threads():
    seen = set()
    model = FastNumpyCharLM("abc", 4, dtype=np.float64, seed=0)
    both = threading.Barrier(2, timeout=10)  # passes only when two slices run at the same time

    def loss_and_grads(x, y, state):
        seen.add(threading.current_thread().name)
        both.wait()
        return model.loss_and_grads(x, y, state)

    x = np.zeros((3, 4), dtype=np.int64)
    with BatchSplit(2, min_slice=2) as split:
        split(loss_and_grads, x, x, None)
    assert len(seen) == 2 and all(name.startswith("rnnkit-scratch") for name in seen)


def test_small_batches_are_not_split():
    calls = []

    def loss_and_grads(x, y, state):
        calls.append(x.shape[1])
        return 0.0, {}, np.zeros((1, x.shape[1], 1))

    x = np.zeros((3, 10), dtype=np.int64)
    with BatchSplit(4, min_slice=4) as split:
        split(loss_and_grads, x, x, None)  # 10 // 4 = 2 slices, not 4
        split(loss_and_grads, x[:, :7], x[:, :7], None)  # one slice: the call as is
    assert calls[:2] == [5, 5] and calls[2:] == [7]


def test_blas_threads_are_limited_while_slices_run():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    seen = []

    def loss_and_grads(x, y, state):
        seen.append({i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"})
        return 0.0, {}, np.zeros((1, x.shape[1], 1))

    x = np.zeros((2, 4), dtype=np.int64)
    with BatchSplit(2, min_slice=2) as split:
        # start from more BLAS threads than a slice may have, so the limit has to change something
        with threadpoolctl.threadpool_limits(limits=split.blas_threads + 1, user_api="blas"):
            before = threadpoolctl.threadpool_info()
            split(loss_and_grads, x, x, None)
            assert threadpoolctl.threadpool_info() == before  # restored afterwards
    assert seen == [{split.blas_threads}] * 2


def test_train_with_threads_follows_one_thread():
    text = "the quick brown fox jumps over the lazy dog. " * 200
    kw = dict(hidden_size=16, seq_len=10, batch_size=256, steps=6, dtype=np.float64, seed=0)
    one = charlm.fit(text, **kw)
    split_model = FastNumpyCharLM(sorted(set(text)), 16, dtype=np.float64, seed=0)
    batches, whole = [], split_model.loss_and_grads
    split_model.loss_and_grads = lambda x, y, state: batches.append(x.shape[1]) or whole(x, y, state)
    two = charlm.fit(text, threads=2, model=split_model, **kw)
    assert batches == [128, 128] * 6  # every step was split in two
    assert np.allclose(one.losses, two.losses, rtol=1e-10, atol=0)
    for name, p in one.model.parameters().items():
        assert rel_err(two.model.parameters()[name], p) < 1e-9, name


@pytest.mark.parametrize("bad, error, message", [
    (0, ValueError, "must be greater than zero, got 0"),
    (-1, ValueError, "must be greater than zero, got -1"),
    (1.5, TypeError, "should be of type int, got: float"),
    ("2", TypeError, "should be of type int, got: str"),
    (True, TypeError, "should be of type int, got: bool"),
])
def test_threads_must_be_a_positive_integer(bad, error, message):
    with pytest.raises(error, match=f"^threads {message}$"):
        BatchSplit(bad)
    with pytest.raises(error, match=f"^min_slice {message}$"):
        BatchSplit(2, min_slice=bad)


def test_warns_without_threadpoolctl(monkeypatch):
    from rnnkit.scratch.fast import batch_split

    monkeypatch.setattr(batch_split, "ThreadpoolController", None)
    with pytest.warns(RuntimeWarning, match="OPENBLAS_NUM_THREADS"):
        BatchSplit(2).close()
