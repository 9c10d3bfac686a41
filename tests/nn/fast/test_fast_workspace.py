"""The fast path's buffer pool (``rnnkit.nn.fast.workspace``) and its no-grad path give the same numbers.

Buffers of a finished call go back to a pool and are handed to the next call of the same shape, so
the risk is aliasing: a live graph's buffers given to another call. Oracle: the same computation
with the pool turned off (``rnnkit.options(workspace=False)``), which allocates fresh buffers every
call. Each test runs on a pool of its own (``rnnkit.options(workspace=pool)``), so what it counts is
its own.
"""

from __future__ import annotations

import pytest
import torch
from test_fast_driver import make_inputs

import rnnkit
from rnnkit.nn.fast.compiled import CPUKernelsUnavailable, load
from rnnkit.nn.fast.driver import recurrence
from rnnkit.nn.fast.registry import KERNELS
from rnnkit.nn.fast.workspace import Owner, Workspace


@pytest.fixture
def pool():
    """A pool of this test's own, in force for the test's thread."""
    pool = Workspace(limit_bytes=1 << 30)
    with rnnkit.options(workspace=pool):
        yield pool


def _grads(cell, seed, reverse=False):
    """Output, final states and all input gradients of one call (weights seeded per call)."""
    gi, w, state, params = make_inputs(cell, seed=seed)
    out, final = recurrence(cell, gi, state, w, params, reverse=reverse)
    loss = out.square().sum() + sum(s.sum() for s in final)
    return [out, *final, *torch.autograd.grad(loss, [gi, w, *state, *params])]


@pytest.mark.parametrize("cell", ["lstm", "ln_lstm", "gru"])
def test_interleaved_graphs_do_not_share_buffers(cell, pool):
    """Two graphs alive at once, backwards in reverse order, repeated: equal to the pool-off run."""
    with rnnkit.options(workspace=False):
        expected = [_grads(cell, s, reverse=bool(s % 2)) for s in (0, 1, 0, 1)]
    for rnd in range(2):  # the second round runs on buffers the first gave back
        live = []
        for s in (0, 1, 0, 1):
            gi, w, state, params = make_inputs(cell, seed=s)
            out, final = recurrence(cell, gi, state, w, params, reverse=bool(s % 2))
            live.append((out, final, [gi, w, *state, *params]))
        for k in reversed(range(4)):  # the newest graph first: the others must still be intact
            out, final, inputs = live[k]
            loss = out.square().sum() + sum(s.sum() for s in final)
            got = [out, *final, *torch.autograd.grad(loss, inputs)]
            for a, b in zip(got, expected[k]):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert pool.held > 0 or rnd == 0  # buffers did come back to the pool


def test_retain_graph_second_backward_equal(pool):
    gi, w, state, params = make_inputs("ln_lstm", seed=2)
    out, final = recurrence("ln_lstm", gi, state, w, params)
    loss = out.square().sum()
    g1 = torch.autograd.grad(loss, [gi, w, *params], retain_graph=True)
    _grads("ln_lstm", 3)  # another call in between, which may take pooled buffers
    g2 = torch.autograd.grad(loss, [gi, w, *params])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("cell", list(KERNELS))
def test_no_grad_forward_equals_grad_forward(cell, pool):
    """Under no_grad the LSTM kernels keep nothing for backward; outputs must not change."""
    gi, w, state, params = make_inputs(cell, seed=4)
    out, final = recurrence(cell, gi, state, w, params)
    with torch.no_grad():
        out_ng, final_ng = recurrence(cell, gi, state, w, params)
    torch.testing.assert_close(out_ng, out.detach(), rtol=0, atol=0)
    for a, b in zip(final_ng, final):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)


def test_limit_zero_keeps_nothing():
    empty = Workspace(limit_bytes=0)
    with rnnkit.options(workspace=empty):
        _grads("ln_lstm", 0)
    assert empty.held == 0 and not any(empty.free.values())


def test_workspace_off_uses_fresh_buffers():
    """``workspace=False`` inside a pool's scope: the kept buffer is not handed out, and what the
    call took is not given back to any pool."""
    pool = Workspace()
    kept = torch.empty(4, 5)
    pool.give([kept])
    with rnnkit.options(workspace=pool):
        owner = Owner()
        assert owner.take((4, 5), kept) is kept  # the pool's buffer, as a call would get it
    del owner  # garbage: the buffer goes back
    assert pool.held == kept.nbytes
    with rnnkit.options(workspace=pool), rnnkit.options(workspace=False):
        owner = Owner()
        fresh = owner.take((4, 5), kept)
    assert fresh is not kept and owner.pool is None and pool.held == kept.nbytes
    del owner
    kept_now = pool.free[((4, 5), kept.dtype, kept.device)]
    assert pool.held == kept.nbytes and len(kept_now) == 1 and kept_now[0] is kept


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_threads_share_the_pool_safely(compiled, pool):
    """Four Python threads run fast-path calls at once (the compiled loop lets the GIL go),
    taking and giving back buffers of the same shapes: every result equals the one-thread
    result, and the pool's byte count ends equal to what it holds. A thread starts from the
    default options, so each enters the same ones as the test (the way a user would)."""
    import threading

    if compiled:
        try:
            load()
        except CPUKernelsUnavailable as e:
            pytest.skip(f"compiled CPU kernels unavailable here: {e}")
    cells = ["lstm", "ln_lstm"] * 2
    with rnnkit.options(compiled=compiled):
        expected = [[_grads(c, s) for s in range(3)] for c in cells]
    results, errors = [None] * len(cells), []

    def work(k):
        try:
            with rnnkit.options(compiled=compiled, workspace=pool):
                results[k] = [_grads(cells[k], s) for s in range(3) for _ in range(4)][::4]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(cells))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for got, want in zip(results, expected):
        for a_run, b_run in zip(got, want):
            for a, b in zip(a_run, b_run):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    held = sum(t.nbytes for kept in pool.free.values() for t in kept)
    assert pool.held == held and held > 0
