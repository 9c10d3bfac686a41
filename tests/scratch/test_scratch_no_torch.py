"""rnnkit.scratch works where torch cannot be imported: import it with torch blocked."""

from __future__ import annotations

from torch_blocked import run_without_torch

SCRATCH_RUNS = (
    """
    import sys

    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker failed: torch imported")

    import numpy as np
    from rnnkit import scratch

    lstm = scratch.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    out, (h, c), cache = lstm.forward(x)
    d_x, _, grads = lstm.backward(np.ones_like(out), cache)
    assert d_x.shape == x.shape and len(grads) == 16
    model = scratch.NumpyCharLM("ab ", 8, seed=0)
    assert len(model.sample(10, seed=0)) == 10
    fast = scratch.fast.FastNumpyCharLM("ab ", 8, seed=0)
    assert len(fast.sample(10, seed=0)) == 10
    import rnnkit
    assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
    print("scratch ok without torch")
    """
)


def test_import_scratch_with_torch_blocked():
    result = run_without_torch(SCRATCH_RUNS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "scratch ok without torch" in result.stdout
