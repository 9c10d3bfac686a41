"""Training on the memory benchmarks (adding problem, copy task) with a chosen cell.

Each step draws a fresh batch (the data are unlimited), takes one Adam step on the task loss with the
gradient norm clipped, and every ``eval_every`` steps measures the metric on a fixed held-out set:

    adding:  MSE of the final-state regression   vs the baseline 1/6 (always predict 1)
    copy:    cross-entropy per step (nats)        vs the baseline K log 8 / (T + 2K)

A run counts as *solved* when the final metric is below ``solve_ratio`` (10%) of the baseline. Models:
a :class:`~rnnkit.models.classifier.SequenceClassifier` with one output (adding) and a
:class:`~rnnkit.models.tagger.Tagger` over one-hot inputs (copy).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.models.classifier import SequenceClassifier
from rnnkit.models.tagger import CELLS, Tagger
from rnnkit.tasks.adding import adding_baseline, adding_batch
from rnnkit.tasks.copying import VOCAB_SIZE, copy_baseline, copy_batch
from rnnkit.tasks.losses import masked_cross_entropy

MEMORY_TASKS = ("adding", "copy")


@dataclass
class MemoryTaskConfig:
    """Settings of one training run: the budget of ``benchmarks/memory_tasks.py`` (a minute or two on
    a laptop CPU at T = 50)."""

    task: str = "adding"  # "adding" | "copy"
    cell: str = "lstm"  # "rnn" | "lstm" | "gru"
    length: int = 50  # adding: sequence length T; copy: the delay T (sequences are T + 2K long)
    num_symbols: int = 10  # copy: K symbols to remember
    hidden_size: int = 64
    num_layers: int = 1
    batch_size: int = 64
    steps: int = 2000
    lr: float = 3e-3
    clip: float = 1.0  # max gradient norm
    eval_every: int = 100
    eval_size: int = 512
    solve_ratio: float = 0.1  # solved when metric < solve_ratio * baseline
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if self.task not in MEMORY_TASKS:
            raise ValueError(f"task must be one of {', '.join(MEMORY_TASKS)}; got {self.task!r}")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}; got {self.cell!r}")
        for name in ("length", "hidden_size", "num_layers", "batch_size", "eval_every", "eval_size", "num_symbols"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.task == "adding" and self.length < 2:
            raise ValueError(f"the adding problem needs length >= 2, got {self.length}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


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
) -> tuple[nn.Module, MemoryTaskResult]:
    """Train a model on a memory task; returns the model and the result (with the metric history)."""
    model = model if model is not None else build_memory_model(config)
    baseline = baseline_for(config)
    eval_gen = torch.Generator().manual_seed(10_000 + config.seed)  # held-out set, never trained on
    x_eval, y_eval = memory_batch(config, config.eval_size, eval_gen)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    history: list[dict] = []
    start = time.perf_counter()
    running = math.nan

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
        running = value if math.isnan(running) else 0.95 * running + 0.05 * value
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
