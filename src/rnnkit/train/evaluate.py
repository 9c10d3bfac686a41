"""Validation loss of a saved run: nats and bits per character over a whole split, state carried."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from rnnkit.data.corpora import load_corpus
from rnnkit.data.text import CorpusError, split_text
from rnnkit.train.checkpoint import load_model
from rnnkit.train.engines import eval_predictions, evaluate_model
from rnnkit.train.progress import WorkProgress


@dataclass
class EvalResult:
    loss: float  # nats per character
    chars: int  # predictions scored
    source: str
    split: str

    @property
    def bpc(self) -> float:
        return self.loss / math.log(2.0)


def evaluate_run(run_dir: str | Path, data: str | None = None, split: str = "val",
                 device: str | torch.device = "cpu", *, stream=None) -> EvalResult:
    """Loss of the run's model on ``split`` ("val", "train" or "all") of ``data`` (default: the
    corpus it was trained on), split as in training. Progress goes to ``stream`` (stderr): a bar on
    a terminal, else a line every few seconds."""
    if split not in ("val", "train", "all"):
        raise CorpusError(f"--split must be val, train or all, got {split!r}")
    model, vocab, cfg = load_model(run_dir, device)
    corpus = load_corpus(data or cfg.data,
                         note=lambda text: print(text, file=stream or sys.stderr, flush=True))
    train, val = split_text(corpus.text, cfg.val_fraction)
    text = {"val": val, "train": train, "all": corpus.text}[split]
    if len(text) < 2:
        raise CorpusError(f"{corpus.source}: the {split} split has {len(text)} character(s); "
                          "at least 2 are needed to score a prediction")
    ids = vocab.encode(text, f"{corpus.source} ({split} split)")
    what = {"val": "the validation split", "train": "the training split", "all": "the whole text"}
    with WorkProgress(eval_predictions(len(ids)), f"scoring {what[split]}",
                      stream=stream) as progress:
        total, count = evaluate_model(model, ids, torch.device(device), progress)
    return EvalResult(total / count, count, corpus.source, split)
