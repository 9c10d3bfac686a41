"""Which cell solves which memory task at which length, within one fixed training budget.

    .venv/bin/python benchmarks/memory_tasks.py                          # adding, T = 10 20 50 100
    .venv/bin/python benchmarks/memory_tasks.py --task copy --lengths 10 20 --num-symbols 3
    .venv/bin/python benchmarks/memory_tasks.py --quick                  # smoke run, seconds

First it checks correctness (the trivial baselines measured against their formulas, the data against
their definitions, the step-by-step unrolling against the layer), then trains one model per (cell,
length) with the same budget and hyperparameters (Adam, fixed steps and batch, gradient clipping,
torch's default initialisation), then prints a Markdown table: the held-out metric as a fraction of
the trivial baseline, a tick where it is below ``--solve-ratio`` (10%) of it, and the step at which
that first happened. Results depend on the seed; timings depend on the machine (report them as such).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict

import torch
from doc_section import add_doc_flag, write_section

from rnnkit.data.atomic import atomic_write_text
from rnnkit.models.build import make_rnn
from rnnkit.tasks.adding import BASELINE_MSE, adding_batch
from rnnkit.tasks.copying import BLANK, copy_baseline, copy_batch
from rnnkit.tasks.losses import masked_cross_entropy
from rnnkit.tasks.memory import MemoryTaskConfig, train_memory_task
from rnnkit.viz.gradflow import StepwiseRNN


def check_correctness() -> list[str]:
    """Failures, as sentences; empty when every check passes."""
    failures = []
    x, y = adding_batch(200_000, 6, torch.Generator().manual_seed(0))
    mse = float(((y - 1.0) ** 2).mean())
    if abs(mse - BASELINE_MSE) > 3e-3:
        failures.append(f"adding baseline: predicting 1.0 gave MSE {mse:.4f}, expected 1/6")
    if not torch.allclose((x[..., 0] * x[..., 1]).sum(1), y):
        failures.append("adding: the target is not the sum of the marked values")
    T, K = 20, 10
    _, ty = copy_batch(64, T, K, torch.Generator().manual_seed(0))
    logits = torch.full((64, T + 2 * K, 10), -1e4)
    logits[:, : T + K, BLANK] = 0.0
    logits[:, T + K :, 1:9] = 0.0
    ce = float(masked_cross_entropy(logits, ty))
    if not math.isclose(ce, copy_baseline(T, K), rel_tol=1e-6):
        failures.append(f"copy baseline: memoryless CE {ce:.5f} != formula {copy_baseline(T, K):.5f}")
    for cell in ("rnn", "lstm", "gru"):
        rnn = make_rnn(cell, 3, 5, num_layers=2, batch_first=True).double()
        xs = torch.randn(4, 9, 3, dtype=torch.double)
        if not torch.allclose(StepwiseRNN(rnn)(xs)[0], rnn(xs)[0]):
            failures.append(f"{cell}: step-by-step unrolling differs from the layer")
    return failures


def main(argv=None) -> int:
    d = MemoryTaskConfig()  # one budget for the table and for `rnnkit task`
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=("adding", "copy"), default="adding")
    p.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"])
    p.add_argument("--lengths", nargs="+", type=int, default=[10, 20, 50, 100])
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--hidden-size", type=int, default=d.hidden_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--num-symbols", type=int, default=d.num_symbols, help="copy: symbols to remember")
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--solve-ratio", type=float, default=d.solve_ratio)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--quick", action="store_true", help="tiny budget: checks that everything runs")
    add_doc_flag(p)
    args = p.parse_args(argv)
    if args.quick:
        args.lengths, args.steps, args.hidden_size, args.eval_every = [5, 10], 30, 16, 10
    torch.set_num_threads(args.threads)

    failures = check_correctness()
    if failures:
        print("correctness checks FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("correctness checks passed (baselines, data, step-by-step unrolling)\n")

    results = []
    for length in args.lengths:
        for cell in args.cells:
            config = MemoryTaskConfig(
                task=args.task, cell=cell, length=length, num_symbols=args.num_symbols,
                hidden_size=args.hidden_size, batch_size=args.batch_size, steps=args.steps, lr=args.lr,
                eval_every=args.eval_every, solve_ratio=args.solve_ratio, seed=args.seed,
            )
            start = time.perf_counter()
            _, r = train_memory_task(config)
            threshold = config.solve_ratio * r.baseline
            first = next((row["step"] for row in r.history if row["metric"] < threshold), None)
            results.append({"cell": cell, "length": length, "metric": r.metric, "baseline": r.baseline,
                            "solved": r.solved, "first_solved_step": first, "accuracy": r.accuracy,
                            "seconds": time.perf_counter() - start})
            print(f"{args.task} {cell:>4} T={length:<4} metric {r.metric:.4f} / baseline {r.baseline:.4f}"
                  f" = {r.metric / r.baseline:6.1%}  {'solved' if r.solved else 'not solved':>10}"
                  f"  {results[-1]['seconds']:.0f}s", flush=True)

    print("\n" + table(results, args))
    write_section(__file__, table(results, args), threads=torch.get_num_threads(), argv=argv,
                  title="Memory tasks: which cell solves which length")
    if args.json:
        atomic_write_text(args.json, json.dumps(
            {"settings": vars(args), "config_defaults": asdict(MemoryTaskConfig()),
             "results": results}, indent=2))
    return 0


def table(results: list[dict], args) -> str:
    what = "length T" if args.task == "adding" else f"delay T (K={args.num_symbols})"
    metric = "MSE" if args.task == "adding" else "cross-entropy"
    lengths = sorted({r["length"] for r in results})
    lines = [
        f"{args.task}: {metric} as % of the trivial baseline after {args.steps} steps (batch "
        f"{args.batch_size}, H={args.hidden_size}, Adam lr {args.lr}); ✓ = below "
        f"{args.solve_ratio:.0%}, with the first step it was",
        "",
        f"| cell \\ {what} | " + " | ".join(str(t) for t in lengths) + " |",
        "|---|" + "---|" * len(lengths),
    ]
    for cell in args.cells:
        cells = []
        for t in lengths:
            r = next(r for r in results if r["cell"] == cell and r["length"] == t)
            pct = _percent(r["metric"] / r["baseline"])
            cells.append(f"✓ {pct} (step {r['first_solved_step']})" if r["solved"] else f"✗ {pct}")
        lines.append(f"| {cell} | " + " | ".join(cells) + " |")
    seconds = sum(r["seconds"] for r in results)
    lines += ["", f"total training time {seconds:.0f} s on {torch.get_num_threads()} thread(s)"]
    return "\n".join(lines)


def _percent(ratio: float) -> str:
    """1.5% or 0.042%: two significant digits below 1%, so small errors still compare."""
    return f"{100 * ratio:.2g}%" if ratio < 0.01 else f"{ratio:.1%}"


if __name__ == "__main__":
    sys.exit(main())
