"""The adding problem (Hochreiter & Schmidhuber 1997, experiment 4; in the form of Le et al. 2015 and
Arjovsky et al. 2016): remember two numbers marked somewhere in a long sequence and output their sum.

Each sequence has T steps of two features: ``x[t, 0] ~ U(0, 1)`` and a marker ``x[t, 1]`` that is 1 at
exactly two steps, one drawn uniformly from the first half and one from the second half, and 0
elsewhere. The target is the sum of the two marked values::

    x: (B, T, 2),  y = x[i, 0] + x[j, 0]: (B,)

Trivial baseline: predicting 1 (the mean of y) whatever the input has mean-squared error
Var(y) = Var(U1) + Var(U2) = 1/12 + 1/12 = 1/6 ≈ 0.1667. (The figure 0.1767 sometimes quoted does not
follow from this distribution; ``tests/tasks/test_task_data.py`` measures it.) A model that solves the
task must carry one number across at least T/2 steps, which is where vanishing gradients bite.
"""

from __future__ import annotations

# ruff: noqa: F722 (jaxtyping shape strings such as "B T H" are not Python expressions)
import torch
from jaxtyping import Float
from torch import Tensor

from rnnkit.checks import check_int, check_positive_int

BASELINE_MSE = 1.0 / 6.0  # MSE of always predicting 1.0


def adding_batch(
    batch_size: int, length: int, generator: torch.Generator | None = None
) -> tuple[Float[Tensor, "B T 2"], Float[Tensor, " B"]]:
    """One batch of the adding problem: inputs (B, T, 2) and targets (B,)."""
    check_positive_int("batch_size", batch_size)
    check_int("length", length, 2)  # one marker in each half
    half = length // 2
    values = torch.rand(batch_size, length, generator=generator)  # (B, T)
    first = torch.randint(0, half, (batch_size,), generator=generator)  # in [0, T/2)
    second = torch.randint(half, length, (batch_size,), generator=generator)  # in [T/2, T)
    markers = torch.zeros(batch_size, length)
    rows = torch.arange(batch_size)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = torch.stack([values, markers], dim=2)  # (B, T, 2)
    y = values[rows, first] + values[rows, second]  # (B,)
    return x, y


def adding_baseline(length: int | None = None) -> float:
    """The mean-squared error of always predicting 1.0 (the same for every length)."""
    return BASELINE_MSE
