"""``rnnkit task adding|copy|reverse|sort``: train on a synthetic task and report the metric against
the trivial baseline. Flags map one to one onto the fields of the task's config dataclass."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path

from rnnkit.cli import CLIError, user_errors

MEMORY = {"adding": "the adding problem (Hochreiter & Schmidhuber 1997): sum two marked numbers",
          "copy": "the copy task (Arjovsky et al. 2016): recall K symbols after a delay T"}
TRANSDUCE = {"reverse": "encoder-decoder: reverse a digit string",
             "sort": "encoder-decoder: sort a digit string"}


def add_config_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ("task",)) -> None:
    """One ``--flag`` per dataclass field (default None: the dataclass default applies)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint = hints[f.name]
        kind = next((t for t in (bool, int, float, str) if t is hint or t in typing.get_args(hint)), str)
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            parser.add_argument(flag, type=kind, default=None, metavar=f.name.upper(),
                                help=f"(default: {f.default})")


def config_from_args(cls, args, **fixed):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if getattr(args, f.name, None) is not None}
    values.update(fixed)
    with user_errors():
        return cls(**values)


def _set_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def run_memory(args) -> int:
    from rnnkit.tasks.memory import MemoryTaskConfig, train_memory_task

    _set_threads(args.threads)
    config = config_from_args(MemoryTaskConfig, args, task=args.task_name)
    unit = "MSE" if config.task == "adding" else "cross-entropy/step"
    print(f"rnnkit task {config.task}: cell={config.cell} T={config.length} hidden={config.hidden_size} "
          f"steps={config.steps}")

    def log(row):
        acc = f"  recall acc {row['accuracy']:.3f}" if "accuracy" in row else ""
        print(f"  step {row['step']:>6}  train {row['train_loss']:.4f}  eval {unit} {row['metric']:.4f}"
              f"  (baseline {row['baseline']:.4f}){acc}  {row['seconds']:.0f}s", flush=True)

    model, result = train_memory_task(config, log=None if args.quiet else log)
    baseline_name = "always predict 1.0" if config.task == "adding" else "memoryless: blanks, then uniform guess"
    print(f"{config.task} {config.cell} T={config.length}: {unit} {result.metric:.4f} vs baseline "
          f"{result.baseline:.4f} ({baseline_name}) = {result.metric / result.baseline:.1%} of baseline -> "
          f"{'SOLVED' if result.solved else 'not solved'} (threshold {config.solve_ratio:.0%}), {result.seconds:.0f}s")
    if result.accuracy is not None:
        print(f"recalled symbols correct: {result.accuracy:.1%}")
    if args.out_dir:
        # name the metric column by what it measures, so curves label it
        column = "eval_mse" if config.task == "adding" else "eval_ce"
        rows = [{(column if k == "metric" else k): v for k, v in row.items()} for row in result.history]
        _save(args.out_dir, model, config, rows, {"kind": "memory_task", "solved": result.solved,
                                                  "metric": result.metric, "baseline": result.baseline})
    return 0


def run_transduction(args) -> int:
    from rnnkit.tasks.train_transduction import TransductionConfig, train_transduction

    _set_threads(args.threads)
    config = config_from_args(TransductionConfig, args, task=args.task_name)
    print(f"rnnkit task {config.task}: {config.cell} encoder-decoder, hidden={config.hidden_size}, "
          f"digit strings of length {config.min_len}-{config.max_len}")

    def log(row):
        print(f"  step {row['step']:>6}  train {row['train_loss']:.4f}  exact match {row['exact_match']:.3f}"
              f"  token acc {row['token_accuracy']:.3f}  {row['seconds']:.0f}s", flush=True)

    model, result = train_transduction(config, log=None if args.quiet else log)
    print(f"{config.task}: exact match {result.exact_match:.1%} (token accuracy {result.token_accuracy:.1%}) "
          f"after {result.steps_run} steps, {result.seconds:.0f}s; trivial baseline: 0% exact match")
    if args.show:
        from rnnkit.tasks.transduction import decode_digits, encode_digits, make_transduction_batch

        for text in args.show:
            with user_errors():
                batch = make_transduction_batch(config.task, [[i - 3 for i in encode_digits(text)]])
            pred = model.greedy_decode(batch.src, batch.src_lengths, max_len=len(text) + 2)[0]
            print(f"  {text} -> {decode_digits(pred)}")
    if args.out_dir:
        _save(args.out_dir, model, config, result.history,
              {"kind": "transduction", "exact_match": result.exact_match})
    return 0


def _save(out_dir: str, model, config, history, extra) -> None:
    from safetensors.torch import save_file

    from rnnkit.tasks.runlog import write_run_folder

    out = write_run_folder(out_dir, config, history, extra)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    print(f"run folder: {out} (config.json, metrics.csv, model.safetensors)")


def read_run_json(run_dir: str | Path) -> dict:
    """A run folder's config.json as a dict (any rnnkit run); CLIError if missing or not JSON."""
    path = Path(run_dir) / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise CLIError(f"no config.json in {run_dir}") from err
    except json.JSONDecodeError as err:
        raise CLIError(f"{path} is not valid JSON: {err}") from err


def load_memory_run(run_dir: str | Path, cfg: dict | None = None):
    """The model and config of a run folder written by ``rnnkit task adding|copy --out-dir``.

    ``cfg``: its config.json when the caller has already read it."""
    from safetensors.torch import load_file

    from rnnkit.tasks.memory import MemoryTaskConfig, build_memory_model

    run = Path(run_dir)
    cfg = read_run_json(run) if cfg is None else cfg
    if cfg.get("kind") != "memory_task":
        raise CLIError(f"{run} is not a memory-task run (expected kind 'memory_task', got {cfg.get('kind')!r})")
    names = {f.name for f in dataclasses.fields(MemoryTaskConfig)}
    config = MemoryTaskConfig(**{k: v for k, v in cfg.items() if k in names})
    model = build_memory_model(config)
    weights = run / "model.safetensors"
    if not weights.is_file():
        raise CLIError(f"no model.safetensors in {run}")
    model.load_state_dict(load_file(str(weights)))
    return model, config


def register(sub) -> None:
    from rnnkit.tasks.memory import MemoryTaskConfig
    from rnnkit.tasks.train_transduction import TransductionConfig

    p = sub.add_parser("task", help="train on a synthetic task (adding, copy, reverse, sort)",
                       description="Train on a synthetic task and report the metric against the trivial baseline.")
    tasks = p.add_subparsers(dest="task_name", metavar="TASK", required=True)
    for name, help_ in {**MEMORY, **TRANSDUCE}.items():
        q = tasks.add_parser(name, help=help_, description=help_)
        cls = MemoryTaskConfig if name in MEMORY else TransductionConfig
        add_config_flags(q, cls)
        q.add_argument("--out-dir", help="write a run folder: config.json, metrics.csv, model.safetensors")
        q.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
        q.add_argument("--quiet", action="store_true", help="print only the final line")
        if name in TRANSDUCE:
            q.add_argument("--show", nargs="*", metavar="DIGITS", help="decode these strings after training")
        q.set_defaults(func=run_memory if name in MEMORY else run_transduction)
