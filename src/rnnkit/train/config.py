"""The training configuration: one dataclass whose fields are the ``rnnkit train`` flags, one to one.

Its defaults train on the built-in ``python-docs`` corpus for 2200 steps or at most 150 s of training
(about 2 minutes for the whole command on an idle 2-core CPU).
`PRESETS` hold tuned recipes (``--preset shakespeare``); explicit flags override a preset, and
on ``--resume`` the run's saved configuration is the base that flags override.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

from rnnkit.checks import (
    check_choice,
    check_int,
    check_positive_int,
    check_positive_number,
    check_probability,
    check_range,
    errors_as,
)
from rnnkit.data.corpora import BUILTIN


class ConfigError(ValueError):
    """A configuration value that cannot work: the message names the flag, expected and got.

    ``cli``: the same message worded for the command line (its flags instead of TrainConfig's
    fields), where the two differ.
    """

    def __init__(self, message: str, *, cli: str | None = None):
        super().__init__(message)
        self.cli = cli or message


@dataclass
class TrainConfig:
    """Everything a character-LM run depends on; ``rnnkit train --hidden-size 512`` is
    ``TrainConfig(hidden_size=512)``.

    The defaults train a 1x384 LSTM on the built-in ``python-docs`` corpus for 2200 steps or 150 s
    of training, whichever comes first (about 2 minutes for the whole command on an idle 2-core CPU),
    the cosine decay following the clock so that a slower machine still ends annealed.
    ``max_time=0`` makes the run step-based: the same numbers on every machine, and ``resume=True``
    continues it bit for bit on CPU.
    """

    # data and run folder
    data: str = BUILTIN  # a UTF-8 text file, or a named corpus (python-docs, tinyshakespeare)
    out: str = ""  # run folder; empty: runs/charlm-<date>-<time>
    val_fraction: float = 0.1  # the last 10% of the text is the validation split
    # model
    cell: str = "lstm"  # lstm | gru | rnn
    hidden_size: int = 384
    num_layers: int = 1
    embed_size: int = 32  # 0: one-hot input
    dropout: float = 0.0
    # optimisation: AdamW, clipping, linear warm-up then cosine decay to lr * min_lr_ratio
    seq_len: int = 64  # truncated-BPTT window (characters)
    batch_size: int = 32  # parallel streams (global, over all processes)
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_iters: int = 50
    decay_iters: int = 0  # cosine length in steps; 0: max_iters
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max global gradient norm; 0: no clipping
    max_iters: int = 2200
    # seconds of training (periodic evaluation included); 0: no limit. When set, the cosine decay
    # follows the clock too, so results depend on the machine's speed (no bit-exact resume)
    max_time: float = 150.0
    # evaluation, logging, reproducibility
    eval_every: int = 500  # validate and save a checkpoint every this many steps
    eval_chars: int = 0  # periodic validation on the first this many characters; 0: all
    log_every: int = 50
    sample_length: int = 300  # characters printed after training; 0: none
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # fp32 | bf16 (autocast; the loss stays in float32) | fp64 (weights, states and loss in float64:
    # slow, for checking numbers, e.g. that data parallelism changes nothing but rounding)
    precision: str = "fp32"
    engine: str = "torch"  # torch | numpy (rnnkit.scratch: CPU, fp32, one-hot input, no dropout)
    numpy_threads: int = 1  # --engine numpy: split each batch's streams over this many threads
    resume: bool = False  # continue the run in --out

    def shape(self) -> dict:
        return {k: getattr(self, k) for k in SHAPE_FIELDS}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# what a checkpoint's tensors depend on: --resume refuses to change these
SHAPE_FIELDS = ("cell", "hidden_size", "num_layers", "embed_size", "batch_size")

PRESETS: dict[str, dict] = {
    # tinyshakespeare in under 230 s of wall time on a 2-core CPU (docs/charlm.md: how it was found).
    # 215 s of training leave time for start-up, the final full validation and the sample; the
    # cosine decay follows the clock too, so it ends annealed on a slower machine as well.
    "shakespeare": dict(
        data="tinyshakespeare", cell="lstm", hidden_size=512, num_layers=1, embed_size=32,
        dropout=0.1, seq_len=64, batch_size=16, lr=3e-3, min_lr_ratio=0.01, warmup_iters=50,
        decay_iters=0, weight_decay=0.01, grad_clip=1.0, max_iters=3600, max_time=215.0,
        eval_every=1000, eval_chars=20_000,
    ),
}


def _field_types() -> dict[str, type]:
    return {f.name: type(getattr(TrainConfig(), f.name)) for f in fields(TrainConfig)}


def from_dict(values: dict, source: str = "config") -> TrainConfig:
    """A TrainConfig from a dict (config.json's ``config``); unknown keys are an error."""
    types = _field_types()
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    clean = {}
    for key, value in values.items():
        want = types[key]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ConfigError(
                f"{source}: {key} must be {want.__name__}, got {type(value).__name__} {value!r}"
            )
        clean[key] = value
    return TrainConfig(**clean)


RUN_FORMAT = "rnnkit-charlm-run"
MODEL_KEYS = (("vocab_size", int), ("cell", str), ("hidden_size", int), ("num_layers", int),
              ("embed_size", int))


def read_run_config(run_dir: Path) -> tuple[TrainConfig, dict]:
    """(config, model shape) from a run folder's config.json; ConfigError if it is not one."""
    path = run_dir / "config.json"
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
        if doc.get("format") != RUN_FORMAT:
            raise ValueError(f"format is {doc.get('format')!r}, expected {RUN_FORMAT!r}")
        cfg, shape = from_dict(doc["config"], str(path)), doc["model"]
        for key, kind in MODEL_KEYS:
            if not isinstance(shape.get(key), kind):
                raise ValueError(f"model.{key} missing or not {kind.__name__}")
    except (ValueError, KeyError, TypeError, AttributeError, ConfigError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ConfigError(f"{path} is not an rnnkit char-LM run config: {reason}") from None
    return cfg, shape


def make_config(overrides: dict, preset: str | None = None) -> TrainConfig:
    """Defaults (or the resumed run's saved config), then the preset, then explicit flags."""
    base = TrainConfig()
    if overrides.get("resume"):
        out = overrides.get("out") or ""
        if not out:
            raise ConfigError("--resume needs --out RUN_DIR, the run folder to continue")
        if not Path(out).exists():
            raise ConfigError(f"--resume: no such run folder: {out}")
        if not (Path(out) / "config.json").is_file():
            raise ConfigError(f"--resume: {out} is not a run folder (no config.json)")
        base, _ = read_run_config(Path(out))
    if preset is not None:
        with errors_as(ConfigError):
            check_choice("--preset", preset, tuple(PRESETS))
        base = dataclasses.replace(base, **PRESETS[preset])
    cfg = dataclasses.replace(base, **overrides)
    if cfg.engine == "numpy" and "embed_size" not in overrides:
        cfg.embed_size = 0  # the NumPy model reads one-hot input
    check_config(cfg)
    return cfg


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_values(cfg: TrainConfig) -> None:
    """Each field on its own, in rnnkit.checks' words, named by its flag."""
    with errors_as(ConfigError):
        choices = {"cell": ("lstm", "gru", "rnn"), "precision": ("fp32", "bf16", "fp64"),
                   "engine": ("torch", "numpy")}
        for name, allowed in choices.items():
            check_choice(_flag(name), getattr(cfg, name), allowed)
        for name in ("hidden_size", "num_layers", "seq_len", "batch_size", "max_iters", "eval_every",
                     "log_every", "numpy_threads"):
            check_positive_int(_flag(name), getattr(cfg, name))
        for name in ("embed_size", "warmup_iters", "decay_iters", "eval_chars", "sample_length"):
            check_int(_flag(name), getattr(cfg, name), 0)
        check_probability("--dropout", cfg.dropout)
        check_range("--val-fraction", cfg.val_fraction, 0, 1, low_open=True, high_open=True)
        check_positive_number("--lr", cfg.lr)
        check_range("--min-lr-ratio", cfg.min_lr_ratio, 0, 1)
        for name in ("weight_decay", "grad_clip", "max_time"):
            check_range(_flag(name), getattr(cfg, name), 0, math.inf)


def check_config(cfg: TrainConfig) -> None:
    """Reject values that cannot work, naming the flag (expected, got)."""
    _check_values(cfg)
    if cfg.engine != "numpy" and cfg.numpy_threads != 1:
        raise ConfigError(f"--numpy-threads applies to --engine numpy only, got {cfg.numpy_threads} "
                          f"with --engine {cfg.engine}")
    if cfg.engine == "numpy":
        for name, ok, need in (("precision", cfg.precision == "fp32", "fp32"),
                               ("dropout", cfg.dropout == 0.0, "0"),
                               ("embed_size", cfg.embed_size == 0, "0 (one-hot input)"),
                               ("device", cfg.device in ("auto", "cpu"), "cpu")):
            if not ok:
                raise ConfigError(
                    f"--engine numpy needs --{name.replace('_', '-')} {need}, got "
                    f"{getattr(cfg, name)!r}"
                )
