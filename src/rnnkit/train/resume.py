"""Continuing a run: refuse a resume that cannot be exact, then load what the checkpoint holds."""

from __future__ import annotations

import hashlib
from pathlib import Path

from rnnkit.data.streams import Streams
from rnnkit.data.vocab import Vocab
from rnnkit.train import checkpoint as ckpt
from rnnkit.train.config import SHAPE_FIELDS, ConfigError, TrainConfig


class RunExistsError(ConfigError):
    """The run folder already holds a checkpoint and ``resume`` was not asked for."""

    def __init__(self, run_dir: Path):
        super().__init__(
            f"{run_dir} already holds a run; set resume=True to continue it, or choose another out",
            cli=f"{run_dir} already holds a run; pass --resume to continue it, or choose another "
                "--out",
        )


def check_run_folder(run_dir: Path, cfg: TrainConfig) -> None:
    """Before any work: a fresh run needs a folder without a checkpoint; a resume needs one, made
    with the same model shape and engine."""
    if not cfg.resume:
        if ckpt.has_checkpoint(run_dir):
            # (a folder with only config.json and vocab.json was stopped before its first save:
            # it is started again)
            raise RunExistsError(run_dir)
        return
    if not ckpt.has_checkpoint(run_dir):
        raise ConfigError(
            f"resume: {run_dir} has no checkpoint yet (it stopped before its first save); start "
            "it again with resume=False",
            cli=f"--resume: {run_dir} has no checkpoint yet (it stopped before its first save); "
                "run the same command without --resume to start it again",
        )
    saved_cfg, _ = ckpt.read_config(run_dir)
    for name in SHAPE_FIELDS:
        old, new = getattr(saved_cfg, name), getattr(cfg, name)
        if old != new:
            raise ConfigError(
                f"resume: the run in {run_dir} has {name.replace('_', '-')} {old!r}, the flags "
                f"ask for {new!r}; a checkpoint only continues with the same "
                f"{', '.join(SHAPE_FIELDS)}"
            )
    if saved_cfg.engine != cfg.engine:
        raise ConfigError(f"resume: the run was trained with --engine {saved_cfg.engine}, "
                          f"not {cfg.engine}")


def check_vocab(run_dir: Path, vocab: Vocab) -> None:
    """A resumed run continues only on text with the characters it was trained on."""
    saved_vocab = ckpt.read_vocab(run_dir)
    if saved_vocab != vocab:
        added = sorted(set(vocab.chars) - set(saved_vocab.chars))
        removed = sorted(set(saved_vocab.chars) - set(vocab.chars))
        raise ConfigError(
            f"resume: the data's vocabulary differs from the run's ({len(vocab)} vs "
            f"{len(saved_vocab)} characters; new: {''.join(added)[:20]!r}, missing: "
            f"{''.join(removed)[:20]!r}); a checkpoint only continues on text with the same characters"
        )


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def restore(run_dir: Path, engine, streams: Streams, text: str, note) -> tuple[int, float]:
    """Load weights and training state into ``engine`` and ``streams``; returns (step, elapsed).

    ``note(text)`` reports what the user should know (None: say nothing, as on a non-main process).
    """
    weights, w_step = ckpt.load_weights(run_dir)
    state = ckpt.load_state(run_dir)
    try:
        step, elapsed = int(state["step"]), float(state["elapsed"])
        position = state["streams"]
    except (KeyError, TypeError, ValueError):
        raise ckpt.CheckpointError(f"{run_dir / ckpt.STATE} lacks the step, clock or stream "
                                   "position") from None
    if w_step is not None and w_step != step:
        raise ckpt.CheckpointError(
            f"{run_dir}: {ckpt.WEIGHTS} is from step {w_step} but {ckpt.STATE} from step {step} "
            "(the last save was cut short); cannot resume exactly"
        )
    engine.load_weights(weights, run_dir / ckpt.WEIGHTS)
    engine.load_training_state(state)
    if state.get("corpus_sha256") == fingerprint(text):
        try:
            streams.load_state_dict(position)
        except (KeyError, TypeError, ValueError) as err:
            raise ckpt.CheckpointError(f"{run_dir / ckpt.STATE}: {err}") from None
    else:
        # same characters, different text: the old stream positions mean nothing here
        engine.load_training_state({**state, "carried": []})
        if note is not None:
            note("note: the text differs from the one this run was trained on; the streams "
                 "start again from its beginning")
    return step, elapsed
