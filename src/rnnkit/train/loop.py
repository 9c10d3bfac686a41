"""The training loop of the character language model: stateful truncated BPTT over parallel streams.

One step reads the next (T, B) window of every stream (`rnnkit.data.Streams`), runs the model
from the state the previous window ended in (detached: gradients stop at the window edge), and makes
one AdamW update with the global gradient norm clipped and the learning rate from
`rnnkit.train.schedule.learning_rate`. Every ``eval_every`` steps it measures the validation
loss and saves a checkpoint; at the end it saves, then measures the loss on the whole validation split
(outside the ``max_time`` budget).

A checkpoint holds everything the next step depends on (weights, optimizer moments, step, stream
position, carried state, RNG state), so ``k`` steps, a resume, and ``N - k`` more give the weights of
``N`` steps straight, bit for bit on CPU, when the schedule is step-based (``max_time=0``).

`train` reads as its steps: check everything (`_check_setup`, `_load_data`), build
the run (`_Run`), train it (`_Run.train`), score it (`_Run.finish`).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rnnkit.data.corpora import Corpus, load_corpus
from rnnkit.data.streams import Streams
from rnnkit.data.text import check_corpus
from rnnkit.data.vocab import Vocab
from rnnkit.models.charlm import CharLM
from rnnkit.train import checkpoint as ckpt
from rnnkit.train import distributed
from rnnkit.train.config import ConfigError, TrainConfig, check_config
from rnnkit.train.device import check_precision, resolve_device
from rnnkit.train.engines import NumpyEngine, TorchEngine, eval_predictions
from rnnkit.train.metrics import Metrics
from rnnkit.train.progress import Progress, WorkProgress, format_seconds
from rnnkit.train.resume import check_run_folder, check_vocab, fingerprint, restore
from rnnkit.train.rundir import check_out, default_out, link_latest, make_run_dir
from rnnkit.train.schedule import learning_rate
from rnnkit.train.signals import StopSignals

LN2 = math.log(2.0)


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message says what was kept."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    stopped: str  # "max_iters", "max_time" or "interrupted"
    val_loss: float | None  # nats per character on the whole validation split (None: not measured)
    is_main: bool = True

    @property
    def val_bpc(self) -> float | None:
        return None if self.val_loss is None else self.val_loss / LN2


def train(cfg: TrainConfig, *, stream=None) -> TrainResult:
    """Train (or resume) the run ``cfg`` describes; progress goes to ``stream`` (stderr).

    Everything that can be wrong (settings, processes, device, precision, the run folder, the data,
    a resume that cannot continue) is reported before the model is built.
    """
    stream = stream if stream is not None else sys.stderr
    info, device, run_dir = _check_setup(cfg)
    data = _load_data(cfg, run_dir, _printer(stream) if info.is_main else None)
    run = _Run(cfg, info, device, run_dir, data, stream)
    return run.finish(run.train())


def _printer(stream):
    return lambda text: print(text, file=stream, flush=True)


def _check_setup(cfg: TrainConfig) -> tuple[distributed.DistInfo, torch.device, Path]:
    """The checks that need no data: settings, processes, device, precision, the run folder."""
    check_config(cfg)
    info = distributed.from_environment()
    if info.enabled and cfg.engine != "torch":
        raise ConfigError("--engine numpy runs in one process; torchrun needs --engine torch")
    if info.enabled and not cfg.out:
        raise ConfigError("under torchrun pass --out RUN_DIR (all processes must agree on it)")
    if cfg.batch_size % info.world_size:
        raise ConfigError(f"--batch-size must be divisible by the number of processes "
                          f"({info.world_size}), got {cfg.batch_size}")
    device = resolve_device(cfg.device, info)
    run_dir = Path(cfg.out or default_out())
    if info.is_main:
        check_out(run_dir)
    check_run_folder(run_dir, cfg)
    if cfg.engine == "torch":
        check_precision(cfg.precision, cfg.cell, input_size=cfg.embed_size or 16,
                        hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, device=device)
    return info, device, run_dir


@dataclass
class _Data:
    corpus: Corpus
    vocab: Vocab
    train_ids: np.ndarray
    val_ids: np.ndarray


def _load_data(cfg: TrainConfig, run_dir: Path, note) -> _Data:
    """The corpus, split and encoded; a resumed run's vocabulary checked against it."""
    corpus = load_corpus(cfg.data, note=note)
    train_text, val_text = check_corpus(corpus.text, seq_len=cfg.seq_len, batch_size=cfg.batch_size,
                                        val_fraction=cfg.val_fraction, source=corpus.source)
    vocab = Vocab.from_text(corpus.text)
    if cfg.resume:
        check_vocab(run_dir, vocab)
    return _Data(corpus, vocab, vocab.encode(train_text), vocab.encode(val_text))


class _Window:
    """The training loss and speed since the last log line."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.loss, self.steps, self.start = 0.0, 0, time.perf_counter()

    def add(self, loss: float) -> None:
        self.loss, self.steps = self.loss + loss, self.steps + 1

    @property
    def mean(self) -> float:
        return self.loss / self.steps


class _Run:
    """One training run: the engine, the streams, the clock; each method one part of the loop."""

    def __init__(self, cfg: TrainConfig, info: distributed.DistInfo, device: torch.device,
                 run_dir: Path, data: _Data, stream):
        self.cfg, self.info, self.device, self.run_dir, self.data = cfg, info, device, run_dir, data
        self.main, self.stream = info.is_main, stream
        self.say = _printer(stream) if self.main else (lambda text: None)
        self.model, self.engine = self._build()
        self.streams = Streams(data.train_ids, cfg.batch_size, cfg.seq_len, seed=cfg.seed,
                               rank=info.rank, world_size=info.world_size)
        self.metrics = Metrics(run_dir, enabled=self.main)
        self.step, self.elapsed, self.last_saved = 0, 0.0, None
        if cfg.resume:
            self._resume()
        if self.main:
            self._write_folder()
        self.window, self.lr, self.norm = _Window(), 0.0, 0.0
        self.progress = Progress(cfg.max_iters, self.step, every=cfg.log_every, enabled=self.main,
                                 stream=stream)
        self.progress.message(self._banner())

    def _build(self) -> tuple[CharLM, TorchEngine | NumpyEngine]:
        """Model and engine (same seed: same initial weights on every process)."""
        cfg, info = self.cfg, self.info
        torch.manual_seed(cfg.seed)
        model = CharLM(len(self.data.vocab), cell=cfg.cell, hidden_size=cfg.hidden_size,
                       num_layers=cfg.num_layers, embed_size=cfg.embed_size, dropout=cfg.dropout)
        if info.enabled:
            distributed.init(info, self.device)
            torch.manual_seed(cfg.seed + info.rank)  # dropout masks differ between processes
        if cfg.engine == "torch":
            engine = TorchEngine(model, cfg, self.device, info)
        else:
            engine = NumpyEngine(self.data.vocab, cfg)
            if cfg.numpy_threads > 1 and engine.split.parts(cfg.batch_size) == 1:
                self.say(f"note: --numpy-threads {cfg.numpy_threads} does nothing here: a thread "
                         f"needs a slice of at least {engine.split.min_slice} streams, and "
                         f"--batch-size is {cfg.batch_size}")
        return model, engine

    def _resume(self) -> None:
        self.step, self.elapsed = restore(self.run_dir, self.engine, self.streams,
                                          self.data.corpus.text, self.say if self.main else None)
        self.last_saved = self.step
        self.metrics.load(self.step)
        budget = (f", {format_seconds(self.elapsed)} of its {self.cfg.max_time:g} s budget used"
                  if self.cfg.max_time else "")
        self.say(f"resuming {self.run_dir} from its checkpoint at step {self.step} "
                 f"(epoch {self.streams.epoch}){budget}; training to step {self.cfg.max_iters}")

    def _write_folder(self) -> None:
        """The run folder, config.json and vocab.json first: a read-only or full disk shows now."""
        make_run_dir(self.run_dir)
        ckpt.write_config(self.run_dir, self.cfg, self.model.shape())
        ckpt.write_vocab(self.run_dir, self.data.vocab)
        link_latest(self.run_dir)

    def _banner(self) -> str:
        cfg, data = self.cfg, self.data
        n_params = sum(p.numel() for p in self.model.parameters())
        budget = f"{cfg.max_iters} steps" + (f" or {cfg.max_time:g} s" if cfg.max_time else "")
        return (f"charlm: {cfg.cell} {cfg.num_layers}x{cfg.hidden_size}, embed {cfg.embed_size}, "
                f"{n_params:,} parameters, vocabulary {len(data.vocab)} | data "
                f"{data.corpus.source}: {len(data.train_ids):,} train / {len(data.val_ids):,} "
                f"validation characters | {cfg.engine} on {self.device} {cfg.precision}"
                + (f" x{self.info.world_size} processes" if self.info.enabled else "")
                + f" | {budget} | run folder {self.run_dir}")

    def save(self) -> None:
        state = self.engine.training_state()  # a collective under DDP: every process takes part
        if self.main:
            ckpt.save_weights(self.run_dir, self.engine.weights(), self.step)
            ckpt.save_state(self.run_dir, {
                "step": self.step, "elapsed": self.elapsed, "streams": self.streams.state_dict(),
                "corpus_sha256": fingerprint(self.data.corpus.text), **state,
            })
            self.metrics.write(plot=True)
        self.last_saved = self.step

    def train(self) -> str:
        """Steps until max_iters, max_time or a stop signal; returns which of them ended it."""
        cfg, stopped = self.cfg, "max_iters"
        self.t0 = time.perf_counter() - self.elapsed
        try:
            with StopSignals(self.progress.message) as signals:
                while self.step < cfg.max_iters:
                    self.elapsed = time.perf_counter() - self.t0
                    if cfg.max_time and self.elapsed >= cfg.max_time:
                        stopped = "max_time"
                        break
                    stop = self._train_step(signals.requested)
                    self._report()
                    if self.step % cfg.eval_every == 0 and self.step < cfg.max_iters:
                        self._validate_and_save()
                    if stop:
                        stopped = "interrupted"
                        break
                self.elapsed = time.perf_counter() - self.t0
                if self.last_saved != self.step:
                    self.save()
        finally:
            self.progress.close()
        return stopped

    def _train_step(self, stop_requested: bool) -> bool:
        """One window forward and backward, one update; True when any process was asked to stop."""
        cfg, batch = self.cfg, self.streams.next()
        loss, norm = self.engine.train_step(batch.x, batch.y, batch.reset)
        loss_sum, stop = distributed.sum_across([loss, float(stop_requested)], self.info,
                                                self.device)
        loss = loss_sum / self.info.world_size
        if not (math.isfinite(loss) and math.isfinite(norm)):
            kept = (f"the last good checkpoint (step {self.last_saved}) is kept in {self.run_dir}"
                    if self.last_saved is not None else "no checkpoint had been saved yet")
            raise TrainingError(
                f"the loss became non-finite at step {self.step + 1} (loss {loss}, gradient norm "
                f"{norm}); training stopped and {kept}; try a lower --lr"
            )
        self.lr = learning_rate(self.step, lr=cfg.lr, warmup_iters=cfg.warmup_iters,
                                decay_iters=cfg.decay_iters or cfg.max_iters,
                                min_lr_ratio=cfg.min_lr_ratio, elapsed=self.elapsed,
                                max_time=cfg.max_time)
        self.engine.apply(self.lr)
        self.step, self.norm = self.step + 1, norm
        self.window.add(loss)
        return bool(stop)

    def _report(self) -> None:
        """The progress bar or log line; a metrics row every log_every steps."""
        cfg, now = self.cfg, time.perf_counter()
        self.elapsed = now - self.t0
        chars_per_step = cfg.batch_size * cfg.seq_len
        rate = self.window.steps * chars_per_step / max(now - self.window.start, 1e-9)
        eta = (cfg.max_iters - self.step) * chars_per_step / max(rate, 1e-9)
        if cfg.max_time:
            eta = min(eta, max(0.0, cfg.max_time - self.elapsed))
        self.progress.update(self.step, loss=self.window.mean, chars_per_s=rate, lr=self.lr,
                             eta=eta)
        if self.step % cfg.log_every == 0:
            self.metrics.log(step=self.step, epoch=self.streams.epoch,
                             elapsed_s=round(self.elapsed, 3), lr=self.lr,
                             train_loss=self.window.mean, chars_per_s=round(rate),
                             grad_norm=self.norm)
            self.window.reset()

    def _validate_and_save(self) -> None:
        val = self._validate(self.cfg.eval_chars, "validation")
        if self.main:
            self.progress.message(f"step {self.step}: validation loss {val:.4f} nats/char "
                                  f"({val / LN2:.4f} bits/char)")
            self._log_val(val)
        self.save()

    def _validate(self, max_chars: int, what: str) -> float | None:
        """Mean loss on the first ``max_chars`` of the validation split (0: all); main process."""
        if not self.main:
            return None
        ids = self.data.val_ids[: max_chars + 1] if max_chars else self.data.val_ids
        with WorkProgress(eval_predictions(len(ids)), what, stream=self.stream) as progress:
            total, count = self.engine.evaluate(ids, progress)
        return total / count

    def _log_val(self, val: float) -> None:
        self.metrics.log(step=self.step, epoch=self.streams.epoch,
                         elapsed_s=round(self.elapsed, 3), val_loss=val, val_bpc=val / LN2)

    def finish(self, stopped: str) -> TrainResult:
        """Unless interrupted, score the whole validation split (outside the time budget)."""
        result = TrainResult(self.run_dir, self.step, stopped, None, is_main=self.main)
        if stopped != "interrupted":
            val = self._validate(0, "final validation, the whole split")
            if self.main:
                result.val_loss = val
                self._log_val(val)
                self.metrics.write(plot=True)
        self.metrics.close()
        distributed.shutdown(self.info)
        return result
