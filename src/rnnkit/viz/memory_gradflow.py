"""Gradient flow on the memory tasks, per cell, before and after training.

For each cell the same seeded batch of the adding problem (or copy task) is pushed through a fresh
model and ``‖∂L/∂h_t‖`` is measured for every t; the model is trained for a few hundred steps and
measured again. With the loss read at the last step only, the curve shows how much of the error
signal reaches step t: a plain tanh RNN's falls off geometrically going back in time (vanishing
gradients), an LSTM's or GRU's stays level enough to learn the dependency.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace

import torch
from matplotlib.figure import Figure

from rnnkit.tasks.memory import (
    MemoryTaskConfig,
    build_memory_model,
    memory_batch,
    memory_loss,
    train_memory_task,
)
from rnnkit.viz.gradflow import hidden_gradient_norms, log_limits, plot_gradient_norms


def memory_gradient_flow(
    config: MemoryTaskConfig,
    cells: tuple[str, ...] = ("rnn", "lstm", "gru"),
    batch_size: int = 128,
    *,
    progress: Callable[[str], AbstractContextManager[Callable[[int, float], None]]] | None = None,
) -> dict[str, dict]:
    """``{cell: {"before": (T,), "after": (T,), "result": MemoryTaskResult}}`` for the top layer.

    ``progress(cell)``, if given, is entered around that cell's training and yields its
    ``on_step(step, loss)`` callback (a `StepProgress`, say)."""
    out = {}
    for cell in cells:
        cfg = replace(config, cell=cell)
        x, y = memory_batch(cfg, batch_size, torch.Generator().manual_seed(20_000 + cfg.seed))
        def loss(m, x=x, y=y, task=cfg.task):
            return memory_loss(m, x, y, task)

        model = build_memory_model(cfg)
        before = hidden_gradient_norms(model, loss)[-1, 0]  # (T,) top layer, forward direction
        with progress(cell) if progress is not None else nullcontext() as on_step:
            model, result = train_memory_task(cfg, model=model, on_step=on_step)
        after = hidden_gradient_norms(model, loss)[-1, 0]
        out[cell] = {"before": before, "after": after, "result": result}
    return out


def plot_memory_gradient_flow(flows: dict[str, dict], config: MemoryTaskConfig) -> Figure:
    """One panel per cell: ‖∂L/∂h_t‖ against t before and after training, on a shared log scale."""
    fig = Figure(figsize=(4.2 * len(flows), 3.8), layout="constrained")
    axes = [fig.add_subplot(1, len(flows), i + 1) for i in range(len(flows))]
    metric = "MSE" if config.task == "adding" else "CE"
    # one scale for every panel, so the cells compare at a glance, wide enough for every line
    ylim = log_limits({f"{c} {k}": f[k] for c, f in flows.items() for k in ("before", "after")})
    for ax, (cell, flow) in zip(axes, flows.items()):
        r = flow["result"]
        verdict = "solved" if r.solved else "not solved"
        plot_gradient_norms(
            {"before training": flow["before"], f"after {config.steps} steps": flow["after"]},
            title=f"{cell.upper()}: {metric} {r.metric:.3g} vs baseline {r.baseline:.3g} ({verdict})",
            ax=ax,
            ylim=ylim,
        )
    what = "length" if config.task == "adding" else "delay"
    fig.suptitle(
        f"Gradient flow on the {config.task} task ({what} T={config.length}): loss at the end, ‖∂L/∂hₜ‖ for each t",
        fontsize=11,
    )
    return fig
