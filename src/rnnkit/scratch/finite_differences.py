"""Check hand-written gradients against central finite differences in float64.

For every checked entry θ of every named array, with step ε (fourth-order central difference,
error O(ε^4) instead of the O(ε^2) of the two-point form, so float64 round-off dominates):

    numeric = (-f(θ+2ε) + 8 f(θ+ε) - 8 f(θ-ε) + f(θ-2ε)) / (12 ε)
    error   = |analytic - numeric| / max(|analytic|, |numeric|, floor)

and the report is the worst error per array. ``floor`` keeps an entry whose true gradient is zero
from dividing round-off by round-off; above it the error is purely relative.

Usable on any function, including a cell a learner writes: ::

    def f(p):                       # p: the dict passed to gradcheck, perturbed in place
        h, cache = my_step(x, h0, p)
        loss = (h * R).sum()        # any scalar; R random so every output matters
        dx, dh0, grads = my_step_backward(R, cache)
        return loss, grads
    worst = gradcheck(f, params)    # {"weight_ih": 3e-10, ...}; expect < 1e-6
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def gradcheck(
    fn: Callable[[dict], float | tuple[float, dict]],
    params: dict[str, np.ndarray],
    grads: dict[str, np.ndarray] | None = None,
    *,
    eps: float = 1e-3,
    floor: float = 1e-7,
    num_checks: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Worst relative error, per named array, between ``fn``'s gradients and finite differences.

    fn(params) -> (loss, grads): a scalar loss and its gradient for every name in ``params``; or,
    when ``grads`` is given, fn may return the loss alone (cheaper: no backward per evaluation).
    The arrays of ``params`` (float64) are perturbed in place and restored. ``num_checks`` samples
    that many entries per array (all when None).
    """
    for name, p in params.items():
        if not isinstance(p, np.ndarray) or p.dtype != np.float64:
            got = p.dtype if isinstance(p, np.ndarray) else type(p).__name__
            raise TypeError(f"gradcheck needs float64 arrays. Expected float64 for {name!r}, got {got}")
    if grads is None:
        result = fn(params)
        if not isinstance(result, tuple) or len(result) != 2:
            raise TypeError("fn must return (loss, grads) when grads is not given")
        grads = result[1]
    missing = [name for name in params if name not in grads]
    if missing:
        raise KeyError(f"fn returned no gradient for {missing}")
    analytic = {name: np.array(grads[name], dtype=np.float64) for name in params}  # copy: fn may reuse
    rng = np.random.default_rng(seed)
    report = {}
    for name, p in params.items():
        if analytic[name].shape != p.shape:
            raise ValueError(f"gradient for {name!r} must have shape {p.shape}, got {analytic[name].shape}")
        flat = p.reshape(-1)  # a view: writing into it perturbs p
        if not np.shares_memory(flat, p):
            raise ValueError(f"array {name!r} must be contiguous so it can be perturbed in place")
        entries = np.arange(p.size)
        if num_checks is not None and num_checks < p.size:
            entries = rng.choice(p.size, size=num_checks, replace=False)
        worst = 0.0
        for k in entries:
            old = flat[k]
            values = []
            for step in (2, 1, -1, -2):
                flat[k] = old + step * eps
                result = fn(params)
                values.append(float(result[0] if isinstance(result, tuple) else result))
            flat[k] = old
            numeric = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * eps)
            a = analytic[name].reshape(-1)[k]
            worst = max(worst, abs(a - numeric) / max(abs(a), abs(numeric), floor))
        report[name] = worst
    return report
