"""The settings of a task run: :class:`MemoryTaskConfig` (adding, copy) and :class:`TransductionConfig`
(reverse, sort), checked when they are made.

This module never imports torch (except to check a device other than the CPU), so ``rnnkit task
--help`` and a bad flag answer at once, before the seconds that importing torch takes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

CELLS = ("rnn", "lstm", "gru")  # rnnkit.models.layers.CELLS (a test keeps the two equal)
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


def _check_types(config) -> None:
    """Whole numbers where an int is expected, numbers where a float is (bools are neither)."""
    for f in fields(config):
        value, kind = getattr(config, f.name), f.type
        if kind in ("int", int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind in ("float", float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            continue
        if not ok:
            raise ValueError(f"{f.name} must be a{'n int' if kind in ('int', int) else ' number'}, "
                             f"got {value!r}")


def _check_common(config, positive: tuple[str, ...]) -> None:
    _check_types(config)
    if config.cell not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}; got {config.cell!r}")
    for name in positive:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    for name in ("lr", "clip"):
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be > 0, got {getattr(config, name)}")
    if config.steps < 0:
        raise ValueError(f"steps must be >= 0, got {config.steps}")
    if config.seed < 0:
        raise ValueError(f"seed must be >= 0, got {config.seed}")
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
        if self.task not in MEMORY_TASKS:
            raise ValueError(f"task must be one of {', '.join(MEMORY_TASKS)}; got {self.task!r}")
        _check_common(self, ("length", "hidden_size", "num_layers", "batch_size", "eval_every",
                             "eval_size", "num_symbols"))
        if self.task == "adding" and self.length < 2:
            raise ValueError(f"the adding problem needs length >= 2, got {self.length}")
        if not 0 < self.solve_ratio <= 1:
            raise ValueError(f"solve_ratio must lie in (0, 1], got {self.solve_ratio}")


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
        if self.task not in TRANSDUCTIONS:
            raise ValueError(f"task must be one of {', '.join(TRANSDUCTIONS)}; got {self.task!r}")
        _check_common(self, ("hidden_size", "embed_size", "num_layers", "batch_size", "eval_every",
                             "eval_size"))
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {self.min_len} and {self.max_len}")
        if self.target is not None and (isinstance(self.target, bool) or not isinstance(self.target, (int, float))
                                        or not 0 < self.target <= 1):
            raise ValueError(f"target must lie in (0, 1] (an exact-match rate) or be None, got {self.target}")
