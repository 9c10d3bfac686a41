"""The run folder: what a training run writes, and loading it back with clear errors.

    config.json         the TrainConfig and the model shape (format "rnnkit-charlm-run")
    vocab.json          the characters, id = index
    model.safetensors   the weights (CharLM state_dict names), metadata: format, step
    state.pt            training state: step, optimizer, RNG states, stream position, carried
                        recurrent state, clock; plain tensors and containers, so it loads with
                        ``torch.load(weights_only=True)`` (no pickled code runs)
    metrics.csv         one row per log line and per validation
    loss.png            the loss curves

Every file is written atomically (`rnnkit.data.atomic`). The weights go first, then the state;
both carry the step, and a resume refuses a pair that disagrees (a save cut short between them).
A problem with the files raises `CheckpointError` naming the file and what is wrong.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rnnkit.data.atomic import atomic_write_bytes, atomic_write_text
from rnnkit.data.text import CorpusError
from rnnkit.data.vocab import Vocab
from rnnkit.train.config import RUN_FORMAT, ConfigError, TrainConfig, read_run_config

CONFIG, VOCAB, WEIGHTS, STATE = "config.json", "vocab.json", "model.safetensors", "state.pt"
METRICS, PLOT = "metrics.csv", "loss.png"
WEIGHTS_FORMAT, STATE_FORMAT = "rnnkit-charlm", "rnnkit-train-state"


class CheckpointError(Exception):
    """A run folder or checkpoint file that cannot be used (missing, empty, truncated, foreign)."""


def write_file(path: Path, data: bytes | str) -> None:
    """Atomic write; a full disk or read-only folder becomes a CheckpointError that says so."""
    try:
        if isinstance(data, str):
            atomic_write_text(path, data)
        else:
            atomic_write_bytes(path, data)
    except OSError as err:
        raise CheckpointError(f"cannot write {path}: {err.strerror or err}") from None


def _read(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise CheckpointError(f"{path.parent} has no {path.name} ({what}); not a complete run folder")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror or err}") from None
    if not raw:
        raise CheckpointError(f"{path} is empty (an interrupted copy or write?)")
    return raw


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


def _first_sentence(err: BaseException) -> str:
    return _first_line(err).split(". ")[0].rstrip(".")


# ------------------------------------------------------------------------------------------------
# config and vocabulary


def _missing_folder(run_dir: Path) -> str:
    if run_dir.exists():
        return f"{run_dir} is a file, not a run folder"
    if run_dir.is_symlink():  # a dangling runs/latest
        return (f"no such run folder: {run_dir} points at {run_dir.readlink()}, which is gone; "
                "`rnnkit runs` lists the runs there")
    if run_dir.name == "latest":
        return (f"no such run folder: {run_dir} (it appears when a run starts in "
                f"{run_dir.parent}/; `rnnkit train` makes one)")
    return f"no such run folder: {run_dir}"


def write_config(run_dir: Path, cfg: TrainConfig, model_shape: dict) -> None:
    doc = {"format": RUN_FORMAT, "version": 1, "model": model_shape, "config": cfg.to_dict()}
    write_file(run_dir / CONFIG, json.dumps(doc, indent=2) + "\n")


def read_config(run_dir: Path) -> tuple[TrainConfig, dict]:
    """(config, model shape) of a run folder."""
    if not run_dir.is_dir():
        raise CheckpointError(_missing_folder(run_dir))
    _read(run_dir / CONFIG, "the run's configuration")  # missing or empty: say so
    try:
        return read_run_config(run_dir)
    except ConfigError as err:
        raise CheckpointError(str(err)) from None


def write_vocab(run_dir: Path, vocab: Vocab) -> None:
    write_file(run_dir / VOCAB, vocab.to_json() + "\n")


def read_vocab(run_dir: Path) -> Vocab:
    path = run_dir / VOCAB
    raw = _read(path, "the vocabulary")
    try:
        return Vocab.from_json(raw.decode("utf-8"), str(path))
    except (UnicodeDecodeError, CorpusError) as err:
        raise CheckpointError(f"{path}: {_first_line(err)}") from None


# ------------------------------------------------------------------------------------------------
# weights and training state


def save_weights(run_dir: Path, weights: dict[str, torch.Tensor], step: int) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
    meta = {"format": WEIGHTS_FORMAT, "step": str(step)}
    write_file(run_dir / WEIGHTS, st_save(tensors, metadata=meta))


def load_weights(run_dir: Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """(state_dict, step it was saved at, or None when the file does not say)."""
    path = run_dir / WEIGHTS
    raw = _read(path, "the weights")
    try:
        tensors = st_load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8 : 8 + header_len]).get("__metadata__") or {}
    except Exception as err:  # safetensors raises its own error types for bad headers
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated or foreign?): {_first_line(err)}"
        ) from None
    step = meta.get("step")
    return tensors, int(step) if step is not None and step.isdigit() else None


def save_state(run_dir: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save({"format": STATE_FORMAT, "version": 1, **state}, buf)
    write_file(run_dir / STATE, buf.getvalue())


def load_state(run_dir: Path) -> dict:
    path = run_dir / STATE
    raw = _read(path, "the training state")
    try:
        # weights_only: unpickle tensors and plain containers only, never arbitrary objects
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # a zip reader, unpickler or EOF error, depending on the damage
        # torch's own message advises weights_only=False, i.e. running code from the file: the
        # wrong advice for a file rnnkit wrote with tensors and plain containers only
        if isinstance(err, pickle.UnpicklingError) and "Weights only" in str(err):
            why = "it holds Python objects that rnnkit never writes, so none were loaded"
        else:
            why = f"truncated or damaged: {_first_sentence(err)}"
        raise CheckpointError(
            f"{path} is not a readable training state ({why}); this run cannot be resumed, but "
            f"its {WEIGHTS} still samples and evaluates"
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not an rnnkit training state (wrong format)")
    return state


def has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in (WEIGHTS, STATE))


def load_model(run_dir: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode, vocab, config) from a run folder, for sampling and evaluation."""
    from rnnkit.models.charlm import CharLM

    run_dir = Path(run_dir)
    cfg, shape = read_config(run_dir)
    vocab = read_vocab(run_dir)
    if len(vocab) != shape["vocab_size"]:
        raise CheckpointError(
            f"{run_dir}: vocab.json has {len(vocab)} characters but config.json says "
            f"{shape['vocab_size']}; the folder mixes files from different runs"
        )
    try:
        model = CharLM(shape["vocab_size"], cell=shape["cell"], hidden_size=shape["hidden_size"],
                       num_layers=shape["num_layers"], embed_size=shape["embed_size"])
    except (TypeError, ValueError) as err:  # a size of the wrong type or out of range
        raise CheckpointError(f"{run_dir / CONFIG}: {err}") from None
    weights, _ = load_weights(run_dir)
    load_into(model, weights, run_dir / WEIGHTS)
    return model.to(device).eval(), vocab, cfg


def load_into(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    """Copy weights into ``model``; any key or shape mismatch is a CheckpointError."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:5])}" + (" ..." if len(keys) > 5 else ""))
        raise CheckpointError(
            f"{source} does not hold weights for the model in config.json ({'; '.join(parts)})"
        )
    model.load_state_dict(weights)
