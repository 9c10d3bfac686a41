"""The training loop of the character language model: stateful truncated BPTT over parallel streams.

One step reads the next (T, B) window of every stream (:class:`rnnkit.data.Streams`), runs the model
from the state the previous window ended in (detached: gradients stop at the window edge), and makes
one AdamW update with the global gradient norm clipped and the learning rate from
:func:`rnnkit.train.schedule.learning_rate`. Every ``eval_every`` steps it measures the validation
loss and saves a checkpoint; at the end it saves, then measures the loss on the whole validation split
(outside the ``max_time`` budget).

A checkpoint holds everything the next step depends on (weights, optimizer moments, step, stream
position, carried state, RNG state), so ``k`` steps, a resume, and ``N - k`` more give the weights of
``N`` steps straight, bit for bit on CPU (with a step-based schedule, i.e. without ``max_time``).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rnnkit.data.corpora import load_corpus
from rnnkit.data.streams import Streams
from rnnkit.data.text import check_corpus
from rnnkit.data.vocab import Vocab
from rnnkit.models.charlm import CharLM
from rnnkit.train import checkpoint as ckpt
from rnnkit.train import distributed
from rnnkit.train.config import SHAPE_FIELDS, ConfigError, TrainConfig, check_config
from rnnkit.train.engines import NumpyEngine, TorchEngine
from rnnkit.train.metrics import Metrics
from rnnkit.train.progress import Progress
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


def resolve_device(name: str, info: distributed.DistInfo | None = None) -> torch.device:
    info = info or distributed.DistInfo()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = " (this torch is a CPU-only build)" if torch.version.cuda is None else ""
            raise ConfigError(
                f"--device {name}: no CUDA GPU is available{build}; use --device cpu"
            )
        index = info.local_rank if name == "cuda" else name.split(":", 1)[1]
        if not str(index).isdigit() or int(index) >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: expected cuda:N with N < "
                              f"{torch.cuda.device_count()} (the GPUs present)")
        return torch.device("cuda", int(index))
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("--device mps: the Apple GPU backend is not available; use --device cpu")
        return torch.device("mps")
    raise ConfigError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")


def default_out() -> str:
    return time.strftime("runs/charlm-%Y%m%d-%H%M%S")


def _check_resume(run_dir: Path, cfg: TrainConfig, vocab: Vocab) -> None:
    """Refuse, before any training, a resume that would change the vocabulary or the model shape."""
    if not ckpt.has_checkpoint(run_dir):
        raise ConfigError(f"--resume: {run_dir} has no checkpoint yet (it stopped before its first "
                          "save); run the same command without --resume to start it again")
    saved_cfg, saved_shape = ckpt.read_config(run_dir)
    saved_vocab = ckpt.read_vocab(run_dir)
    if saved_vocab != vocab:
        added = sorted(set(vocab.chars) - set(saved_vocab.chars))
        removed = sorted(set(saved_vocab.chars) - set(vocab.chars))
        raise ConfigError(
            f"--resume: the data's vocabulary differs from the run's ({len(vocab)} vs "
            f"{len(saved_vocab)} characters; new: {''.join(added)[:20]!r}, missing: "
            f"{''.join(removed)[:20]!r}); a checkpoint only continues on text with the same characters"
        )
    for name in SHAPE_FIELDS:
        old, new = getattr(saved_cfg, name), getattr(cfg, name)
        if old != new:
            raise ConfigError(
                f"--resume: the run in {run_dir} has {name.replace('_', '-')} {old!r}, the flags "
                f"ask for {new!r}; a checkpoint only continues with the same "
                f"{', '.join(SHAPE_FIELDS)}"
            )
    if saved_cfg.engine != cfg.engine:
        raise ConfigError(f"--resume: the run was trained with --engine {saved_cfg.engine}, "
                          f"not {cfg.engine}")


def train(cfg: TrainConfig, *, stream=None) -> TrainResult:
    """Train (or resume) the run ``cfg`` describes; progress goes to ``stream`` (stderr)."""
    stream = stream if stream is not None else sys.stderr
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
    main = info.is_main

    # -- data: everything that can be wrong with it is reported before the model is built
    corpus = load_corpus(cfg.data)
    train_text, val_text = check_corpus(corpus.text, seq_len=cfg.seq_len, batch_size=cfg.batch_size,
                                        val_fraction=cfg.val_fraction, source=corpus.source)
    vocab = Vocab.from_text(corpus.text)
    train_ids, val_ids = vocab.encode(train_text), vocab.encode(val_text)
    if cfg.resume:
        _check_resume(run_dir, cfg, vocab)
    elif ckpt.has_checkpoint(run_dir):
        # (a folder with only config.json and vocab.json was stopped before its first save: it is
        # started again)
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, or choose "
                          "another --out")

    # -- model, engine, streams (same seed: same initial weights on every process)
    torch.manual_seed(cfg.seed)
    model = CharLM(len(vocab), cell=cfg.cell, hidden_size=cfg.hidden_size,
                   num_layers=cfg.num_layers, embed_size=cfg.embed_size, dropout=cfg.dropout)
    if info.enabled:
        distributed.init(info, device)
        torch.manual_seed(cfg.seed + info.rank)  # dropout masks differ between processes
    engine = TorchEngine(model, cfg, device, info) if cfg.engine == "torch" else NumpyEngine(vocab, cfg)
    if main and cfg.numpy_threads > 1 and engine.split.parts(cfg.batch_size) == 1:
        print(f"note: --numpy-threads {cfg.numpy_threads} does nothing here: a thread needs a slice "
              f"of at least {engine.split.min_slice} streams, and --batch-size is {cfg.batch_size}",
              file=stream)
    streams = Streams(train_ids, cfg.batch_size, cfg.seq_len, seed=cfg.seed, rank=info.rank,
                      world_size=info.world_size)
    metrics = Metrics(run_dir, enabled=main)
    step, elapsed, last_saved = 0, 0.0, None
    if cfg.resume:
        step, elapsed = _restore(run_dir, engine, streams, corpus.text, stream if main else None)
        last_saved = step
        metrics.load(step)
    if main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ckpt.CheckpointError(f"cannot create {run_dir}: {err.strerror or err}") from None
        # written first: a read-only or full folder is reported before any training
        ckpt.write_config(run_dir, cfg, model.shape())
        ckpt.write_vocab(run_dir, vocab)

    def save() -> None:
        nonlocal last_saved
        state = engine.training_state()  # a collective under DDP: every process takes part
        if main:
            ckpt.save_weights(run_dir, engine.weights(), step)
            ckpt.save_state(run_dir, {
                "step": step, "elapsed": elapsed, "streams": streams.state_dict(),
                "corpus_sha256": _fingerprint(corpus.text), **state,
            })
            metrics.write(plot=True)
        last_saved = step

    n_params = sum(p.numel() for p in model.parameters())
    progress = Progress(cfg.max_iters, step, every=cfg.log_every, enabled=main, stream=stream)
    progress.message(
        f"charlm: {cfg.cell} {cfg.num_layers}x{cfg.hidden_size}, embed {cfg.embed_size}, "
        f"{n_params:,} parameters, vocabulary {len(vocab)} | data {corpus.source}: "
        f"{len(train_ids):,} train / {len(val_ids):,} validation characters | {cfg.engine} on "
        f"{device} {cfg.precision}" + (f" x{info.world_size} processes" if info.enabled else "")
        + f" | run folder {run_dir}"
    )

    chars_per_step = cfg.batch_size * cfg.seq_len
    decay_iters = cfg.decay_iters or cfg.max_iters
    stopped = "max_iters"
    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
    last_val = None
    t0 = time.perf_counter() - elapsed
    try:
        with StopSignals(progress.message) as signals:
            while step < cfg.max_iters:
                elapsed = time.perf_counter() - t0
                if cfg.max_time and elapsed >= cfg.max_time:
                    stopped = "max_time"
                    break
                batch = streams.next()
                loss, norm = engine.train_step(batch.x, batch.y, batch.reset)
                loss_sum, stop = distributed.sum_across([loss, float(signals.requested)], info,
                                                        device)
                loss = loss_sum / info.world_size
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    kept = (f"the last good checkpoint (step {last_saved}) is kept in {run_dir}"
                            if last_saved is not None else "no checkpoint had been saved yet")
                    raise TrainingError(
                        f"the loss became non-finite at step {step + 1} (loss {loss}, gradient "
                        f"norm {norm}); training stopped and {kept}; try a lower --lr"
                    )
                lr = learning_rate(step, lr=cfg.lr, warmup_iters=cfg.warmup_iters,
                                   decay_iters=decay_iters, min_lr_ratio=cfg.min_lr_ratio,
                                   elapsed=elapsed, max_time=cfg.max_time)
                engine.apply(lr)
                step += 1
                window_loss, window_steps = window_loss + loss, window_steps + 1

                now = time.perf_counter()
                elapsed = now - t0
                rate = window_steps * chars_per_step / max(now - window_start, 1e-9)
                eta = (cfg.max_iters - step) * chars_per_step / max(rate, 1e-9)
                if cfg.max_time:
                    eta = min(eta, max(0.0, cfg.max_time - elapsed))
                progress.update(step, loss=window_loss / window_steps, chars_per_s=rate, lr=lr,
                                eta=eta)
                if step % cfg.log_every == 0:
                    metrics.log(step=step, epoch=streams.epoch, elapsed_s=round(elapsed, 3), lr=lr,
                                train_loss=window_loss / window_steps, chars_per_s=round(rate),
                                grad_norm=norm)
                    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
                if step % cfg.eval_every == 0 and step < cfg.max_iters:
                    last_val = _validate(engine, val_ids, cfg.eval_chars, main)
                    if main:
                        progress.message(f"step {step}: validation loss {last_val:.4f} nats/char "
                                         f"({last_val / LN2:.4f} bits/char)")
                        metrics.log(step=step, epoch=streams.epoch, elapsed_s=round(elapsed, 3),
                                    val_loss=last_val, val_bpc=last_val / LN2)
                    save()
                if stop:
                    stopped = "interrupted"
                    break
            elapsed = time.perf_counter() - t0
            if last_saved != step:
                save()
    finally:
        progress.close()

    result = TrainResult(run_dir, step, stopped, None, is_main=main)
    if stopped != "interrupted":
        # the whole validation split, outside the training-time budget
        val = _validate(engine, val_ids, 0, main)
        if main:
            result.val_loss = val
            metrics.log(step=step, epoch=streams.epoch, elapsed_s=round(elapsed, 3), val_loss=val,
                        val_bpc=val / LN2)
            metrics.write(plot=True)
    metrics.close()
    distributed.shutdown(info)
    return result


def _validate(engine, val_ids: np.ndarray, max_chars: int, main: bool) -> float | None:
    if not main:
        return None
    ids = val_ids[: max_chars + 1] if max_chars else val_ids
    total, count = engine.evaluate(ids)
    return total / count


def _fingerprint(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _restore(run_dir: Path, engine, streams: Streams, text: str, stream) -> tuple[int, float]:
    """Load weights and training state into ``engine`` and ``streams``; returns (step, elapsed)."""
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
    if state.get("corpus_sha256") == _fingerprint(text):
        try:
            streams.load_state_dict(position)
        except (KeyError, TypeError, ValueError) as err:
            raise ckpt.CheckpointError(f"{run_dir / ckpt.STATE}: {err}") from None
    else:
        # same characters, different text: the old stream positions mean nothing here
        engine.load_training_state({**state, "carried": []})
        if stream is not None:
            print("note: the text differs from the one this run was trained on; the streams "
                  "start again from its beginning", file=stream)
    return step, elapsed
