"""``rnnkit train``, ``sample``, ``eval`` and ``runs``: the character language model from the shell.

Argument parsing only. ``train``'s flags are the fields of `rnnkit.train.TrainConfig`, one
to one (``--hidden-size`` is ``hidden_size``); a flag left out keeps the default, the preset's value,
or on ``--resume`` the run's saved value.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
from dataclasses import fields

from rnnkit.cli import CLIError, cli_message, command_name

HELP = {
    "data": "a UTF-8 text file, or a named corpus: python-docs (built in, the default), "
            "tinyshakespeare (downloaded once)",
    "out": "run folder; empty: runs/charlm-<date>-<time>",
    "val_fraction": "fraction of the text, at its end, held out for validation",
    "cell": "recurrent cell: lstm, gru or rnn",
    "hidden_size": "units per recurrent layer",
    "num_layers": "stacked recurrent layers",
    "embed_size": "character embedding size (0: one-hot input)",
    "dropout": "dropout before the output layer and between layers",
    "seq_len": "truncated-BPTT window in characters",
    "batch_size": "parallel streams of text (over all processes)",
    "lr": "peak learning rate (AdamW)",
    "min_lr_ratio": "the cosine decay ends at lr times this",
    "warmup_iters": "steps of linear warm-up",
    "decay_iters": "steps of cosine decay (0: --max-iters)",
    "weight_decay": "AdamW weight decay on the weight matrices",
    "grad_clip": "clip the global gradient norm to this (0: off)",
    "max_iters": "training steps at most",
    "max_time": "seconds of training at most (periodic validation included), the cosine decay "
                "following the clock; 0: step-based, the same numbers on every machine and a "
                "bit-exact --resume",
    "eval_every": "validate and save a checkpoint every this many steps",
    "eval_chars": "periodic validation on this many characters (0: the whole split)",
    "log_every": "steps between log lines",
    "sample_length": "characters to print after training (0: none)",
    "seed": "random seed",
    "device": "auto, cpu, cuda, cuda:N or mps",
    "precision": "fp32; bf16 (autocast; the loss stays in float32); or fp64 (slow, for "
                 "checking numbers)",
    "engine": "torch, or numpy (rnnkit.scratch: CPU, one-hot input, no dropout)",
    "numpy_threads": "with --engine numpy: split each batch's streams over this many threads "
                     "(helps small models on large batches)",
    "resume": "continue the run in --out from its last checkpoint",
}


def _errors():
    from rnnkit.data.text import CorpusError
    from rnnkit.train import CheckpointError, ConfigError, SamplingError, TrainingError

    return (CorpusError, ConfigError, CheckpointError, SamplingError), TrainingError


def _guard(func):
    """Library errors become one-line CLIErrors; Ctrl-C outside the training loop exits 130."""

    def run(args) -> int:
        user_errors, training_error = _errors()
        try:
            return func(args)
        except user_errors as err:
            raise CLIError(cli_message(err)) from None
        except training_error as err:
            raise CLIError(cli_message(err), code=1) from None
        except KeyboardInterrupt:
            print(f"\nrnnkit {args.command}: interrupted", file=sys.stderr)
            return 130

    return run


def run_train(args) -> int:
    from rnnkit.train import default_prompt, generate, load_model, make_config, train

    names = {f.name for f in fields(_config_class())}
    overrides = {k: v for k, v in vars(args).items() if k in names and v is not None}
    cfg = make_config(overrides, args.preset)
    result = train(cfg)
    if not result.is_main:
        return 130 if result.stopped == "interrupted" else 0
    run_dir = shlex.quote(str(result.run_dir))
    if result.stopped == "interrupted":
        print(f"interrupted at step {result.step}; checkpoint saved in {result.run_dir}\n"
              f"continue with: rnnkit train --out {run_dir} --resume", file=sys.stderr)
        return 130
    print(f"validation loss {result.val_loss:.4f} nats/char ({result.val_bpc:.4f} bits/char) "
          f"after {result.step} steps ({result.stopped.replace('_', '-')} reached)")
    if cfg.sample_length:
        model, vocab, _ = load_model(result.run_dir)
        prompt = default_prompt(vocab)
        print("--- sample (temperature 0.8) ---")
        for ch in generate(model, vocab, prompt, cfg.sample_length, temperature=0.8, seed=cfg.seed):
            sys.stdout.write(ch)
        print("\n---")
    if result.stopped == "max_time":  # the clock ended it: more time, the same step limit
        longer = f"--max-time {cfg.max_time * 2:g}"
    else:
        longer = f"--max-iters {result.step * 2}"
        if cfg.max_time:
            longer += f" --max-time {cfg.max_time * 2:g}"
    rnnkit = command_name()
    latest = link_name(result.run_dir)
    print(f"run folder: {result.run_dir}" + (f" (also {latest})" if latest else "") + "\nnext:\n"
          f"  {rnnkit} sample {run_dir} --prompt 'The ' --length 500 --temperature 0.8\n"
          f"  {rnnkit} eval {run_dir}\n"
          f"  {rnnkit} train --out {run_dir} --resume {longer}   (train longer)")
    return 0


def link_name(run_dir) -> str | None:
    """``runs/latest`` as the user would type it, when it points at ``run_dir``."""
    from pathlib import Path

    from rnnkit.train.rundir import LATEST

    link = Path(run_dir).parent / LATEST
    try:
        same = link.is_symlink() and link.resolve() == Path(run_dir).resolve()
    except OSError:
        return None
    return str(link) if same else None


def run_sample(args) -> int:
    if args.runtime == "onnx":
        return _sample_onnx(args)
    from rnnkit.train import default_prompt, generate, load_model, resolve_device
    from rnnkit.train.sampling import check_options

    device = resolve_device(args.device)
    model, vocab, _ = load_model(args.run_dir, device)
    check_options(len(vocab), args.temperature, args.top_k, args.top_p, args.length)
    prompt = args.prompt if args.prompt else default_prompt(vocab)
    vocab.encode(prompt, "the prompt")  # unknown characters: refuse before printing anything
    pieces = generate(model, vocab, prompt, args.length, temperature=args.temperature,
                      top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    return _write_sample(prompt, pieces, args.length)


def _sample_onnx(args) -> int:
    """The exported model (``rnnkit export RUN_DIR``) in onnxruntime, NumPy for the sampling: the
    same text as the torch sampler for the same seed (rnnkit.export.ort_sample)."""
    from pathlib import Path

    from rnnkit.export import ort_sample

    given = Path(args.run_dir)
    if given.suffix == ".onnx":
        path = given
    else:  # a run folder: the streaming graph when it was exported, else the sequence graph
        candidates = [given / "model-step.onnx", given / "model.onnx"]
        path = next((c for c in candidates if c.is_file()), candidates[-1])
    if not path.is_file():
        raise CLIError(f"--runtime onnx needs an exported model, and {path} does not exist; "
                       f"export it first: {command_name()} export {shlex.quote(args.run_dir)}")
    try:
        model = ort_sample.OnnxCharLM(path)
        prompt = args.prompt if args.prompt else ort_sample.default_prompt(model.vocab)
        pieces = ort_sample.generate(model, prompt, args.length, temperature=args.temperature,
                                     top_k=args.top_k, top_p=args.top_p, seed=args.seed)
        first = next(pieces, "")  # the options and the prompt are checked before anything prints
    except ort_sample.SamplingError as err:
        raise CLIError(str(err)) from None
    return _write_sample(prompt, itertools.chain([first], pieces), args.length)


def _write_sample(prompt: str, pieces, length: int) -> int:
    from rnnkit.train.progress import WorkProgress

    # on a terminal the text itself shows progress; written to a file, a long sample reports on
    # stderr instead
    shown = sys.stdout.isatty()
    sys.stdout.write(prompt)
    with WorkProgress(length, "sampling", enabled=not shown) as progress:
        for ch in pieces:  # streamed: each character appears as soon as it is drawn
            sys.stdout.write(ch)
            sys.stdout.flush()
            progress.update(1)
    sys.stdout.write("\n")
    return 0


def run_eval(args) -> int:
    from rnnkit.train import evaluate_run, resolve_device

    res = evaluate_run(args.run_dir, args.data, args.split, resolve_device(args.device),
                       stream=sys.stderr)
    print(f"{res.split} loss {res.loss:.4f} nats/char, {res.bpc:.4f} bits/char "
          f"({res.chars:,} characters of {res.source})")
    return 0


def run_runs(args) -> int:
    import time

    from rnnkit.train import list_runs

    runs = list_runs(args.folder)
    if not runs:
        print(f"no runs in {args.folder} yet (a run folder holds config.json)")
    for r in runs:
        step = "no checkpoint" if r.step is None else f"step {r.step}"
        val = "" if r.val_loss is None else f", validation {r.val_loss:.4f}"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.modified))
        latest = link_name(r.path)
        mark = f"  <- {latest}" if latest else ""
        print(f"{r.path}  {when}  {r.model}, data {r.data}: {step}{val}{mark}")
    return 0


def _config_class():
    from rnnkit.train.config import TrainConfig

    return TrainConfig


def _float_or_int(kind):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}"
                                             f", got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def register(sub) -> None:
    cfg_cls = _config_class()
    defaults = cfg_cls()
    p = sub.add_parser(
        "train",
        help="train a character language model (default: on Python's docs, 150 s of training, "
             "about 2 minutes in all)",
        description="Train a character-level language model. Every flag is a TrainConfig field. "
                    "The defaults train on the built-in python-docs corpus for at most 150 s of "
                    "training, about 2 minutes for the whole command on an idle 2-core CPU. "
                    "--max-time 0 makes a run step-based: the same numbers on every machine, and "
                    "--resume continues it bit for bit on CPU.",
    )
    p.add_argument("--preset", default=None, help="a tuned recipe: shakespeare")
    for f in fields(cfg_cls):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        text = f"{HELP.get(f.name, '')} (default: {default!r})"
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", default=None, help=HELP.get(f.name))
        elif isinstance(default, (int, float)):
            p.add_argument(flag, type=_float_or_int(type(default)), default=None, help=text,
                           metavar=f.name.upper())
        else:
            p.add_argument(flag, default=None, help=text, metavar=f.name.upper())
    p.set_defaults(func=_guard(run_train))

    p = sub.add_parser("sample", help="generate text from a trained run (streamed)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--prompt", default=None, help="text to continue (default: a newline)")
    p.add_argument("--length", type=_float_or_int(int), default=500, help="characters to generate")
    p.add_argument("--temperature", type=_float_or_int(float), default=1.0,
                   help="softmax temperature; 0 is greedy (default 1.0)")
    p.add_argument("--top-k", type=_float_or_int(int), default=None,
                   help="draw from the k most likely characters only (capped at the vocabulary)")
    p.add_argument("--top-p", type=_float_or_int(float), default=None,
                   help="nucleus sampling: the most likely characters holding this much probability")
    p.add_argument("--seed", type=_float_or_int(int), default=None, help="random seed")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    p.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                   help="torch (default), or onnx: the model exported by `rnnkit export RUN_DIR` "
                        "(RUN_DIR/model-step.onnx or model.onnx, or an .onnx file given as "
                        "RUN_DIR) in onnxruntime; the same text for the same seed")
    p.set_defaults(func=_guard(run_sample))

    p = sub.add_parser("eval", help="validation loss of a trained run, in nats and bits per char")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", default=None,
                   help="a text file or named corpus (default: the run's); split as in training")
    p.add_argument("--split", default="val", choices=("val", "train", "all"),
                   help="which part to score (default: val, the last 10%%)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    p.set_defaults(func=_guard(run_eval))

    p = sub.add_parser("runs", help="list the runs in a folder (default: runs), newest last",
                       description="List the run folders in FOLDER, oldest first, with the step "
                                   "of their checkpoint and their last validation loss; "
                                   "runs/latest points at the newest.")
    p.add_argument("folder", metavar="FOLDER", nargs="?", default="runs",
                   help="the folder that holds the runs (default: runs)")
    p.set_defaults(func=_guard(run_runs))
