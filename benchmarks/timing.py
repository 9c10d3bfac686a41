"""Timing shared by the layer benchmarks (layers.py, custom_cells.py, gflops.py).

Every model's forward (under no_grad) and forward+backward (``out.sum().backward()``) on one
input, interleaved: each round times one call of every model, so drift in the machine's speed
(another job, frequency changes) hits all of them alike. Not a library module: the scripts put
this folder on ``sys.path`` (Python does that for the script's own folder).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch

#: the fastrnns default (T, B, I, H) and a small shape
SHAPES = {"fastrnns": (100, 64, 512, 512), "small": (128, 32, 64, 256)}


def time_layers(
    models: dict[str, torch.nn.Module],
    x: torch.Tensor,
    repeats: int,
    context: Callable[[str], contextlib.AbstractContextManager] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Seconds of each call: ``{name: {"fwd": [...], "fwd+bwd": [...]}}``, one warm-up first.

    ``context(name)``, if given, is entered around each call of that model (the graph and its
    buffers are freed inside the call, so inside the context too).
    """
    xg = x.clone().requires_grad_(True)

    def forward(m):
        with torch.no_grad():
            m(x)

    def forward_backward(m):
        out, _ = m(xg)
        out.sum().backward()

    ctx = context or (lambda name: contextlib.nullcontext())
    times = {name: {"fwd": [], "fwd+bwd": []} for name in models}
    for kind, fn in (("fwd", forward), ("fwd+bwd", forward_backward)):
        for name, m in models.items():
            with ctx(name):
                fn(m)  # warm-up
        for _ in range(repeats):
            for name, m in models.items():
                with ctx(name):
                    t0 = time.perf_counter()
                    fn(m)
                    times[name][kind].append(time.perf_counter() - t0)
    return times
