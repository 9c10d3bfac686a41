"""Reading run folders for the picture commands: a memory-task run (``rnnkit task adding|copy
--out-dir``) or a char-LM run (``rnnkit train``), or a link to one (``runs/latest``).

Every problem (missing folder, no config.json, damaged JSON or weights, weights that do not fit the
config) is one line saying which file and what is wrong.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from rnnkit.checks import check_choice
from rnnkit.cli import CLIError, user_errors
from rnnkit.cli.paths import check_run_folder
from rnnkit.tasks.configs import CELLS

CELL_CHOICES = CELLS  # the task models' cells (tasks.configs needs no torch)


def read_run_json(run_dir: str | Path, flag: str = "--run") -> dict:
    """A run folder's config.json as a dict (any rnnkit run), after checking the folder."""
    path = check_run_folder(run_dir, flag) / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise CLIError(f"cannot read {path}: {err.strerror or err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CLIError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(cfg, dict):
        raise CLIError(f"{path} holds a {type(cfg).__name__}, expected a JSON object")
    return cfg


def run_kind(run_dir: str | Path, cfg: dict) -> str:
    """"charlm" or "memory" for a run's config.json; CLIError for any other run."""
    if cfg.get("format") == "rnnkit-charlm-run":
        return "charlm"
    if cfg.get("kind") == "memory_task":
        return "memory"
    raise CLIError(f"{run_dir}: expected a char-LM run (rnnkit train) or a memory-task run (rnnkit task "
                   f"adding|copy --out-dir), got a run of kind {cfg.get('kind') or cfg.get('format')!r}")


def memory_config(run_dir: str | Path, cfg: dict):
    """The MemoryTaskConfig a memory-task run was trained with (torch is not needed for it)."""
    from rnnkit.tasks.configs import MemoryTaskConfig

    names = {f.name for f in dataclasses.fields(MemoryTaskConfig)}
    try:
        return MemoryTaskConfig(**{k: v for k, v in cfg.items() if k in names})
    except (TypeError, ValueError) as err:
        raise CLIError(f"{Path(run_dir) / 'config.json'}: {err}") from None


def load_memory_run(run_dir: str | Path, cfg: dict | None = None):
    """The model and config of a run folder written by ``rnnkit task adding|copy --out-dir``.

    ``cfg``: its config.json when the caller has already read it."""
    from safetensors.torch import load_file

    from rnnkit.tasks.memory import build_memory_model

    run = Path(run_dir)
    cfg = read_run_json(run) if cfg is None else cfg
    if cfg.get("kind") != "memory_task":
        raise CLIError(f"{run} is not a memory-task run (expected kind 'memory_task', got {cfg.get('kind')!r})")
    config = memory_config(run, cfg)
    weights = run / "model.safetensors"
    if not weights.is_file():
        raise CLIError(f"{run} has no model.safetensors (the weights); not a complete run folder")
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise CLIError(f"{weights} is not a readable safetensors file: {_first_line(err)}") from None
    model = build_memory_model(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CLIError(f"{weights} does not fit the model in config.json: {_first_line(err)}") from None
    return model, config


def load_run(run_dir: str | Path, cfg: dict):
    """("memory", model, config) for a memory-task run, ("charlm", model, vocab) for a char-LM run."""
    if run_kind(run_dir, cfg) == "charlm":
        from rnnkit.train.checkpoint import CheckpointError, load_model
        from rnnkit.train.config import ConfigError

        with user_errors(CheckpointError, ConfigError):
            model, vocab, _ = load_model(Path(run_dir))
        return "charlm", model, vocab
    model, config = load_memory_run(run_dir, cfg)
    return "memory", model, config


def model_shape(run_dir: str | Path, cfg: dict) -> dict:
    """cell, num_layers, bidirectional, sizes from a run folder's config.json (any rnnkit run)."""
    path = Path(run_dir) / "config.json"
    flat = {**cfg, **cfg.get("model", {})} if isinstance(cfg.get("model"), dict) else dict(cfg)
    cell = str(flat.get("cell", flat.get("mode", flat.get("rnn_type", "")))).lower()
    cell = {"rnn_tanh": "rnn", "rnn_relu": "rnn", "elman": "rnn"}.get(cell, cell)
    try:
        check_choice("cell", cell or None, CELL_CHOICES)  # None: config.json names no cell
    except ValueError as err:
        raise CLIError(f"{path}: {err}") from None
    input_size = flat.get("input_size") or flat.get("embed_size") or flat.get("vocab_size")  # 0: one-hot
    if input_size is None and flat.get("task") in ("adding", "copy"):
        input_size = 2 if flat["task"] == "adding" else 10
    try:
        return {
            "cell": cell,
            "num_layers": int(flat.get("num_layers", flat.get("layers", 1))),
            "bidirectional": bool(flat.get("bidirectional", False)),
            "hidden_size": flat.get("hidden_size"),
            "input_size": input_size,
        }
    except (TypeError, ValueError) as err:
        raise CLIError(f"{path}: num_layers is not a whole number ({err})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]
