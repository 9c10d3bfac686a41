"""Training on the memory benchmarks (adding problem, copy task) with a chosen cell.

Each step draws a fresh batch (the data are unlimited), takes one Adam step on the task loss with the
gradient norm clipped, and every ``eval_every`` steps measures the metric on a fixed held-out set:

    adding:  MSE of the final-state regression   vs the baseline 1/6 (always predict 1)
    copy:    cross-entropy per step (nats)        vs the baseline K log 8 / (T + 2K)

A run counts as *solved* when the final metric is below ``solve_ratio`` (10%) of the baseline. Models:
a `SequenceClassifier` with one output (adding) and a
`Tagger` over one-hot inputs (copy).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.models.classifier import SequenceClassifier
from rnnkit.models.tagger import Tagger
from rnnkit.tasks.adding import adding_baseline, adding_batch
from rnnkit.tasks.configs import MEMORY_TASKS, MemoryTaskConfig  # noqa: F401 (re-exported)
from rnnkit.tasks.copying import VOCAB_SIZE, copy_baseline, copy_batch
from rnnkit.tasks.losses import masked_cross_entropy


@dataclass
class MemoryTaskResult:
    config: MemoryTaskConfig
    metric: float  # final held-out metric (MSE or cross-entropy)
    baseline: float
    solved: bool
    accuracy: float | None  # copy: fraction of recalled symbols right
    seconds: float
    history: list[dict] = field(default_factory=list)  # one row per evaluation

    def summary(self) -> dict:
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("config", "history")},
            **{k: asdict(self.config)[k] for k in ("task", "cell", "length", "steps")},
        }


def build_memory_model(config: MemoryTaskConfig) -> nn.Module:
    torch.manual_seed(config.seed)  # the same initial weights for the same seed
    if config.task == "adding":
        model = SequenceClassifier(2, config.hidden_size, 1, config.cell, config.num_layers)
    else:
        model = Tagger(VOCAB_SIZE, config.hidden_size, VOCAB_SIZE, config.cell, config.num_layers)
    return model.to(config.device)


def memory_batch(config: MemoryTaskConfig, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Model-ready inputs (B, L, I) and targets: floats (B,) for adding, ids (B, L) for copy."""
    if config.task == "adding":
        x, y = adding_batch(batch_size, config.length, generator)
    else:
        ids, y = copy_batch(batch_size, config.length, config.num_symbols, generator)
        x = F.one_hot(ids, VOCAB_SIZE).float()  # (B, L, 10)
    return x.to(config.device), y.to(config.device)


def memory_loss(model: nn.Module, x: Tensor, y: Tensor, task: str) -> Tensor:
    """The training loss: MSE of the sum (adding) or per-step cross-entropy (copy)."""
    if task == "adding":
        return F.mse_loss(model(x).squeeze(-1), y)
    return masked_cross_entropy(model(x), y)


def baseline_for(config: MemoryTaskConfig) -> float:
    if config.task == "adding":
        return adding_baseline(config.length)
    return copy_baseline(config.length, config.num_symbols)


@torch.no_grad()
def evaluate_memory(model: nn.Module, config: MemoryTaskConfig, x: Tensor, y: Tensor) -> dict:
    model.eval()
    metric = float(memory_loss(model, x, y, config.task))
    out = {"metric": metric}
    if config.task == "copy":  # how many of the K recalled symbols come out right
        K = config.num_symbols
        pred = model(x)[:, -K:].argmax(-1)  # (B, K)
        out["accuracy"] = float((pred == y[:, -K:]).float().mean())
    model.train()
    return out


def train_memory_task(
    config: MemoryTaskConfig,
    log: Callable[[dict], None] | None = None,
    model: nn.Module | None = None,
    *,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[nn.Module, MemoryTaskResult]:
    """Train a model on a memory task; returns the model and the result (with the metric history).

    ``log(row)`` receives each evaluation row (``train_loss`` is None before the first step);
    ``on_step(step, loss)`` is called after every step with the smoothed training loss (a
    progress bar, say)."""
    model = model if model is not None else build_memory_model(config)
    baseline = baseline_for(config)
    eval_gen = torch.Generator().manual_seed(10_000 + config.seed)  # held-out set, never trained on
    x_eval, y_eval = memory_batch(config, config.eval_size, eval_gen)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    history: list[dict] = []
    start = time.perf_counter()
    running: float | None = None  # no training loss before the first step

    def record(step: int):
        row = {"step": step, "train_loss": running, **evaluate_memory(model, config, x_eval, y_eval)}
        row.update(baseline=baseline, seconds=time.perf_counter() - start)
        history.append(row)
        if log is not None:
            log(row)

    record(0)
    for step in range(1, config.steps + 1):
        x, y = memory_batch(config, config.batch_size, gen)
        loss = memory_loss(model, x, y, config.task)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        opt.step()
        # smoothed training loss for the log (exponential average over ~20 steps)
        value = loss.item()
        running = value if running is None else 0.95 * running + 0.05 * value
        if on_step is not None:
            on_step(step, running)
        if step % config.eval_every == 0 or step == config.steps:
            record(step)
    final = history[-1]
    result = MemoryTaskResult(
        config=config,
        metric=final["metric"],
        baseline=baseline,
        solved=final["metric"] < config.solve_ratio * baseline,
        accuracy=final.get("accuracy"),
        seconds=time.perf_counter() - start,
        history=history,
    )
    return model, result
