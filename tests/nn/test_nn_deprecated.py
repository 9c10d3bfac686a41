"""Names that moved keep working, with a DeprecationWarning that says where they went; switches
that were removed say what replaced them, on reading and on setting."""

from __future__ import annotations

import pytest
import torch

import rnnkit.nn.fused as fused
from rnnkit.nn.fast.driver import recurrence
from rnnkit.nn.fast.ops import EPS
from rnnkit.nn.fast.registry import KERNELS
from rnnkit.nn.fast.workspace import SHARED_POOL
from rnnkit.nn.loop import scan


def inputs(seed=0, T=5, B=3, H=4):
    g = torch.Generator().manual_seed(seed)
    gi = torch.randn(T, B, 4 * H, generator=g, dtype=torch.float64)
    w = 0.5 * torch.randn(4 * H, H, generator=g, dtype=torch.float64)
    state = tuple(torch.randn(B, H, generator=g, dtype=torch.float64) for _ in range(2))
    return gi, w, state


def test_moved_objects():
    for name, obj in (("FUSED_WORKSPACE", SHARED_POOL), ("EPS", EPS)):
        with pytest.warns(DeprecationWarning, match=f"rnnkit.nn.fused.{name} is deprecated"):
            assert getattr(fused, name) is obj
    with pytest.warns(DeprecationWarning, match="rnnkit.nn.fast.registry.KERNELS"):
        cells = fused.CELLS
    assert cells["ln_lstm"] == (KERNELS["ln_lstm"].eager, 2, 4, ("gamma_hh", "gamma_c", "beta_c"))


def test_old_entry_points_keep_their_meaning():
    """``fused_recurrence`` and ``reference_recurrence`` with the old mask arguments (``valid``
    zeroes the outputs, ``keep`` already holds it) give what the new entry points give."""
    from rnnkit.nn.cells import lstm_step

    gi, w, state = inputs()
    lengths = torch.tensor([5, 2, 4])
    valid = (torch.arange(5)[:, None] < lengths[None]).unsqueeze(-1).double()
    mask = torch.full((3, 4), 2.0, dtype=torch.float64)
    new = recurrence("lstm", gi, state, w, lengths=lengths, hidden_mask=mask, reverse=True)
    with pytest.warns(DeprecationWarning, match="use rnnkit.nn.fast.driver.recurrence"):
        old = fused.fused_recurrence("lstm", gi, state, w, keep=valid, valid=valid,
                                     hidden_mask=mask, reverse=True)
    ref = scan(lambda g, s: lstm_step(g, s[0] * mask, s[1], w), gi, state, lengths, True)
    with pytest.warns(DeprecationWarning, match="use rnnkit.nn.loop.scan"):
        old_ref = fused.reference_recurrence(lambda g, hi, s: lstm_step(g, hi, s[1], w), gi, state,
                                             keep=valid, valid=valid, hidden_mask=mask,
                                             reverse=True)
    for result in (old, ref, old_ref):
        torch.testing.assert_close(result[0], new[0], rtol=1e-12, atol=1e-12)
        for a, b in zip(result[1], new[1]):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,use", [("CPU_KERNELS", "compiled=True"),
                                      ("PACKED_GEMM", "gemm='torch'"),
                                      ("PACKED_BACK", "nothing"), ("WHOLE_LOOP", "nothing")])
def test_removed_switches_say_what_replaced_them(name, use):
    with pytest.raises(AttributeError, match=f"{name} was removed; use .*{use}"):
        getattr(fused, name)
    with pytest.raises(AttributeError, match=f"{name} was removed"):
        setattr(fused, name, False)


def test_renamed_functions():
    import rnnkit.nn.mingru as mingru

    for old, new in (("g", mingru.positive_activation), ("log_g", mingru.log_positive_activation),
                     ("scan", mingru.linear_scan), ("scan_log_space", mingru.linear_scan_log)):
        with pytest.warns(DeprecationWarning, match=f"rnnkit.nn.mingru.{old} is deprecated"):
            assert getattr(mingru, old) is new
    with pytest.warns(DeprecationWarning, match="rnnkit.nn.mingru.compile_min_rnn"):
        from rnnkit.nn.compiled import compile_min_rnn
    assert compile_min_rnn is mingru.compile_min_rnn
