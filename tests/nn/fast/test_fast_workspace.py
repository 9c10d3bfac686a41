"""The fused Function's buffer reuse (``FUSED_WORKSPACE``) and its no-grad path give the same numbers.

Buffers of a finished call go back to a pool and are handed to the next call of the same shape, so
the risk is aliasing: a live graph's buffers given to another call. Oracle: the same computation
with the pool turned off (``limit_bytes = 0``), which allocates fresh buffers every call.
"""

from __future__ import annotations

import pytest
import torch
from test_fused_cells import make_inputs

from rnnkit.nn.fused import CELLS, FUSED_WORKSPACE, fused_recurrence


@pytest.fixture
def pool_limit():
    old = FUSED_WORKSPACE.limit_bytes
    FUSED_WORKSPACE.clear()
    yield FUSED_WORKSPACE
    FUSED_WORKSPACE.limit_bytes = old
    FUSED_WORKSPACE.clear()


def _grads(cell, seed, reverse=False):
    """Output, final states and all input gradients of one call (weights seeded per call)."""
    gi, w, state, params = make_inputs(cell, seed=seed)
    out, final = fused_recurrence(cell, gi, state, w, params, reverse=reverse)
    loss = out.square().sum() + sum(s.sum() for s in final)
    return [out, *final, *torch.autograd.grad(loss, [gi, w, *state, *params])]


@pytest.mark.parametrize("cell", ["lstm", "ln_lstm", "gru"])
def test_interleaved_graphs_do_not_share_buffers(cell, pool_limit):
    """Two graphs alive at once, backwards in reverse order, repeated: equal to the pool-off run."""
    pool_limit.limit_bytes = 0
    expected = [_grads(cell, s, reverse=bool(s % 2)) for s in (0, 1, 0, 1)]
    pool_limit.limit_bytes = 1 << 30
    for rnd in range(2):  # the second round runs on buffers the first gave back
        live = []
        for s in (0, 1, 0, 1):
            gi, w, state, params = make_inputs(cell, seed=s)
            out, final = fused_recurrence(cell, gi, state, w, params, reverse=bool(s % 2))
            live.append((out, final, [gi, w, *state, *params]))
        for k in reversed(range(4)):  # the newest graph first: the others must still be intact
            out, final, inputs = live[k]
            loss = out.square().sum() + sum(s.sum() for s in final)
            got = [out, *final, *torch.autograd.grad(loss, inputs)]
            for a, b in zip(got, expected[k]):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert pool_limit.held > 0 or rnd == 0  # buffers did come back to the pool


def test_retain_graph_second_backward_equal(pool_limit):
    gi, w, state, params = make_inputs("ln_lstm", seed=2)
    out, final = fused_recurrence("ln_lstm", gi, state, w, params)
    loss = out.square().sum()
    g1 = torch.autograd.grad(loss, [gi, w, *params], retain_graph=True)
    _grads("ln_lstm", 3)  # another call in between, which may take pooled buffers
    g2 = torch.autograd.grad(loss, [gi, w, *params])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("cell", list(CELLS))
def test_no_grad_forward_equals_grad_forward(cell, pool_limit):
    """Under no_grad the LSTM kernels keep nothing for backward; outputs must not change."""
    gi, w, state, params = make_inputs(cell, seed=4)
    out, final = fused_recurrence(cell, gi, state, w, params)
    with torch.no_grad():
        out_ng, final_ng = fused_recurrence(cell, gi, state, w, params)
    torch.testing.assert_close(out_ng, out.detach(), rtol=0, atol=0)
    for a, b in zip(final_ng, final):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)


def test_limit_zero_keeps_nothing(pool_limit):
    pool_limit.limit_bytes = 0
    _grads("ln_lstm", 0)
    assert pool_limit.held == 0 and not any(pool_limit.free.values())


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_threads_share_the_pool_safely(compiled, pool_limit, monkeypatch):
    """Four Python threads run fused calls at once (the compiled loop lets the GIL go), taking
    and giving back buffers of the same shapes: every result equals the one-thread result, and
    the pool's byte count ends equal to what it holds."""
    import threading

    import rnnkit.nn.cpu_kernels as cpu_kernels
    import rnnkit.nn.fused as fused

    if compiled:
        try:
            cpu_kernels.load()
        except cpu_kernels.CPUKernelsUnavailable as e:
            pytest.skip(f"compiled CPU kernels unavailable here: {e}")
        monkeypatch.setattr(fused, "CPU_KERNELS", True)
    cells = ["lstm", "ln_lstm"] * 2
    expected = [[_grads(c, s) for s in range(3)] for c in cells]
    pool_limit.limit_bytes = 1 << 30
    results, errors = [None] * len(cells), []

    def work(k):
        try:
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
    held = sum(t.nbytes for kept in pool_limit.free.values() for t in kept)
    assert pool_limit.held == held
