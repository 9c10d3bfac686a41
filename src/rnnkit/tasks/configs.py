"""The settings of a task run: `MemoryTaskConfig` (adding, copy) and `TransductionConfig`
(reverse, sort), checked when they are made.

This module never imports torch (except to check a device other than the CPU), so ``rnnkit task
--help`` and a bad flag answer at once, before the seconds that importing torch takes.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnnkit.checks import (
    check_bool,
    check_choice,
    check_int,
    check_positive_int,
    check_positive_number,
    check_range,
)

CELLS = ("rnn", "lstm", "gru")  # rnnkit.models.build.CELLS (a test keeps the two equal)
MEMORY_TASKS = ("adding", "copy")
TRANSDUCTIONS = ("reverse", "sort")


def check_device(device: str) -> None:
    """ValueError unless ``device`` names a device torch has here ("cpu", "cuda", "cuda:1", "mps")."""
    if device == "cpu":
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be cpu, cuda, cuda:N or mps, got {device!r}") from err
    available = {"cpu": lambda: True, "cuda": torch.cuda.is_available,
                 "mps": lambda: torch.backends.mps.is_available()}.get(dev.type, lambda: False)
    if not available():
        raise ValueError(f"device {device!r} is not available here (torch {torch.__version__})")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def _check_common(config, positive: tuple[str, ...]) -> None:
    check_choice("cell", config.cell, CELLS)
    for name in positive:
        check_positive_int(name, getattr(config, name))
    for name in ("steps", "seed"):
        check_int(name, getattr(config, name), 0)
    for name in ("lr", "clip"):
        check_positive_number(name, getattr(config, name))
    check_device(config.device)


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
        check_choice("task", self.task, MEMORY_TASKS)
        _check_common(self, ("length", "hidden_size", "num_layers", "batch_size", "eval_every",
                             "eval_size", "num_symbols"))
        if self.task == "adding":
            check_int("length", self.length, 2)  # one marker in each half
        check_range("solve_ratio", self.solve_ratio, 0, 1, low_open=True)


@dataclass
class TransductionConfig:
    task: str = "reverse"  # "reverse" | "sort"
    cell: str = "gru"
    min_len: int = 1
    max_len: int = 8
    hidden_size: int = 128
    embed_size: int = 32
    num_layers: int = 1
    batch_size: int = 64
    steps: int = 3000
    lr: float = 3e-3
    cosine: bool = True  # decay the learning rate to 0 over the steps (a stable final model)
    clip: float = 1.0
    eval_every: int = 250
    eval_size: int = 500
    target: float | None = 0.99  # stop early once exact match reaches this (None: run all steps)
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check_choice("task", self.task, TRANSDUCTIONS)
        _check_common(self, ("hidden_size", "embed_size", "num_layers", "batch_size", "eval_every",
                             "eval_size"))
        check_positive_int("min_len", self.min_len)
        check_int("max_len", self.max_len, self.min_len)
        check_bool("cosine", self.cosine)
        if self.target is not None:  # an exact-match rate
            check_range("target", self.target, 0, 1, low_open=True)
