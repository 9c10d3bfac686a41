"""``rnnkit task adding|copy|reverse|sort``: train on a synthetic task and report the metric against
the trivial baseline. Flags map one to one onto the fields of the task's config dataclass.

Every flag (and ``--out-dir``, ``--show``) is checked before torch is even imported; training shows
a progress bar on a terminal and log lines otherwise, and the evaluation rows go to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

from rnnkit.checks import check_positive_int
from rnnkit.cli import CLIError, user_errors
from rnnkit.cli.paths import check_writable_folder
from rnnkit.cli.runs import load_memory_run, read_run_json  # noqa: F401 (their old home)

MEMORY = {"adding": "the adding problem (Hochreiter & Schmidhuber 1997): sum two marked numbers",
          "copy": "the copy task (Arjovsky et al. 2016): recall K symbols after a delay T"}
TRANSDUCE = {"reverse": "encoder-decoder: reverse a digit string",
             "sort": "encoder-decoder: sort a digit string"}
HELP = {
    "cell": "recurrent cell: rnn (Elman, tanh), lstm or gru",
    "length": "adding: sequence length T; copy: the delay T (sequences are T + 2K long)",
    "num_symbols": "copy: K symbols to remember",
    "hidden_size": "hidden units H per layer",
    "embed_size": "token embedding size",
    "num_layers": "stacked recurrent layers",
    "batch_size": "sequences per training step",
    "steps": "training steps (0: only evaluate the untrained model)",
    "lr": "Adam learning rate",
    "clip": "clip the gradient norm to this",
    "eval_every": "evaluate on the held-out set every this many steps",
    "eval_size": "held-out sequences",
    "solve_ratio": "the run counts as solved below this fraction of the baseline",
    "min_len": "shortest digit string",
    "max_len": "longest digit string",
    "cosine": "decay the learning rate to 0 over the steps",
    "target": "stop once held-out exact match reaches this fraction",
    "seed": "random seed of weights and data",
    "device": "cpu, cuda, cuda:N or mps",
}
BASELINES = {"adding": "always predict 1.0", "copy": "memoryless (blanks, then a uniform guess)"}


def add_config_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ("task",)) -> None:
    """One ``--flag`` per dataclass field (default None: the dataclass default applies)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint = hints[f.name]
        kind = next((t for t in (bool, int, float, str) if t is hint or t in typing.get_args(hint)), str)
        flag = "--" + f.name.replace("_", "-")
        default = ("on" if f.default else "off") if kind is bool else f.default
        text = f"{HELP.get(f.name, f.name.replace('_', ' '))} (default {default})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(flag, type=kind, default=None, metavar=f.name.upper(), help=text)


def config_from_args(cls, args, **fixed):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if getattr(args, f.name, None) is not None}
    values.update(fixed)
    with user_errors():
        return cls(**values)


def _check_common(args) -> None:
    """--threads and --out-dir, before any work."""
    if args.threads is not None:
        with user_errors():
            check_positive_int("--threads", args.threads)
    if args.out_dir:
        out = Path(args.out_dir)
        if out.exists() and not out.is_dir():
            raise CLIError(f"--out-dir: {out} is a file; expected a folder")
        if (out / "model.safetensors").exists():
            raise CLIError(f"--out-dir: {out} already holds a run (model.safetensors); choose another folder")
        check_writable_folder(out, f"--out-dir {out}")


def _start_torch(threads: int | None) -> None:
    import torch

    torch.set_num_threads(threads or 1)


def _number(value) -> str:
    return "     -" if value is None else f"{value:.4f}"  # no training loss before the first step


def run_memory(args) -> int:
    from rnnkit.tasks.configs import MemoryTaskConfig
    from rnnkit.tasks.progress import StepProgress

    config = config_from_args(MemoryTaskConfig, args, task=args.task_name)
    _check_common(args)
    unit = "MSE" if config.task == "adding" else "cross-entropy/step"
    print(f"rnnkit task {config.task}: cell={config.cell} T={config.length} hidden={config.hidden_size} "
          f"steps={config.steps}", flush=True)
    _start_torch(args.threads)
    from rnnkit.tasks.memory import train_memory_task

    with StepProgress(config.steps, f"{config.task} {config.cell}", enabled=not args.quiet) as bar:
        def log(row):
            acc = f"  recall acc {row['accuracy']:.3f}" if "accuracy" in row else ""
            bar.write(f"  step {row['step']:>6}  train {_number(row['train_loss'])}  eval {unit} "
                      f"{row['metric']:.4f}  (baseline {row['baseline']:.4f}){acc}  {row['seconds']:.0f}s")

        model, result = train_memory_task(config, log=None if args.quiet else log, on_step=bar)
    print(f"{config.task} {config.cell} T={config.length}: {unit} {result.metric:.4f} vs baseline "
          f"{result.baseline:.4f} ({BASELINES[config.task]}) = {result.metric / result.baseline:.1%} of baseline -> "
          f"{'SOLVED' if result.solved else 'not solved'} (threshold {config.solve_ratio:.0%}), {result.seconds:.0f}s")
    if result.accuracy is not None:
        print(f"recalled symbols correct: {result.accuracy:.1%}")
    if args.out_dir:
        # name every column by what it measures, so `rnnkit curves` puts each on the right axis
        word = "mse" if config.task == "adding" else "ce"
        names = {"metric": f"eval_{word}", "train_loss": f"train_{word}", "baseline": f"baseline_{word}",
                 "accuracy": "recall_accuracy"}
        rows = [{names.get(k, k): v for k, v in row.items()} for row in result.history]
        _save(args.out_dir, model, config, rows, {
            "kind": "memory_task", "solved": result.solved, "metric": result.metric,
            "baseline": result.baseline, "baseline_name": BASELINES[config.task]})
    return 0


def _check_show(args) -> list[list[int]]:
    """--show's strings as lists of digits 0..9 (checked here: the check needs no torch)."""
    sources = []
    for text in args.show or ():
        if not text or any(c not in "0123456789" for c in text):
            raise CLIError(f"--show takes strings of the digits 0-9, got {text!r}")
        sources.append([int(c) for c in text])
    return sources


def run_transduction(args) -> int:
    from rnnkit.tasks.configs import TransductionConfig
    from rnnkit.tasks.progress import StepProgress

    config = config_from_args(TransductionConfig, args, task=args.task_name)
    _check_common(args)
    show = _check_show(args)
    print(f"rnnkit task {config.task}: {config.cell} encoder-decoder, hidden={config.hidden_size}, "
          f"digit strings of length {config.min_len}-{config.max_len}, up to {config.steps} steps", flush=True)
    _start_torch(args.threads)
    from rnnkit.tasks.train_transduction import train_transduction

    with StepProgress(config.steps, f"{config.task} {config.cell}", enabled=not args.quiet) as bar:
        def log(row):
            bar.write(f"  step {row['step']:>6}  train {_number(row['train_loss'])}  exact match "
                      f"{row['exact_match']:.3f}  token acc {row['token_accuracy']:.3f}  {row['seconds']:.0f}s")

        model, result = train_transduction(config, log=None if args.quiet else log, on_step=bar)
    print(f"{config.task}: exact match {result.exact_match:.1%} (token accuracy {result.token_accuracy:.1%}) "
          f"after {result.steps_run} steps, {result.seconds:.0f}s; trivial baseline: 0% exact match")
    if show:
        from rnnkit.tasks.transduction import decode_digits, make_transduction_batch

        for text, digits in zip(args.show, show):
            batch = make_transduction_batch(config.task, [digits])
            pred = model.greedy_decode(batch.src, batch.src_lengths, max_len=len(text) + 2)[0]
            print(f"  {text} -> {decode_digits(pred)}")
    if args.out_dir:
        _save(args.out_dir, model, config, result.history,
              {"kind": "transduction", "exact_match": result.exact_match})
    return 0


def _save(out_dir: str, model, config, history, extra) -> None:
    from safetensors.torch import save

    from rnnkit.data.atomic import atomic_write_bytes
    from rnnkit.tasks.runlog import write_run_folder

    try:
        out = write_run_folder(out_dir, config, history, extra)
        atomic_write_bytes(out / "model.safetensors",
                           save({k: v.contiguous() for k, v in model.state_dict().items()}))
    except OSError as err:
        raise CLIError(f"cannot write the run folder {out_dir}: {err.strerror or err}", code=1) from None
    print(f"run folder: {out} (config.json, metrics.csv, model.safetensors)")


def register(sub) -> None:
    from rnnkit.tasks.configs import MemoryTaskConfig, TransductionConfig

    p = sub.add_parser("task", help="train on a synthetic task (adding, copy, reverse, sort)",
                       description="Train on a synthetic task and report the metric against the trivial baseline.")
    tasks = p.add_subparsers(dest="task_name", metavar="TASK", required=True)
    for name, help_ in {**MEMORY, **TRANSDUCE}.items():
        q = tasks.add_parser(name, help=help_, description=help_)
        cls = MemoryTaskConfig if name in MEMORY else TransductionConfig
        add_config_flags(q, cls)
        q.add_argument("--out-dir", help="write a run folder: config.json, metrics.csv, model.safetensors "
                                         "(default: none)")
        q.add_argument("--threads", type=int, default=None,
                       help="torch threads (default 1: the task models are small, and on a busy machine "
                            "more threads mostly wait for each other)")
        q.add_argument("--quiet", action="store_true",
                       help="print only the header and the result: no progress, no evaluation rows (default off)")
        if name in TRANSDUCE:
            q.add_argument("--show", nargs="*", metavar="DIGITS",
                           help="decode these digit strings after training (default: none)")
        q.set_defaults(func=run_memory if name in MEMORY else run_transduction)
