"""The char LM's ``--preset shakespeare`` run with the default options against ``RNNKIT_COMPILED=0``.

    python benchmarks/charlm_preset.py                 # 300 steps each, step-based (max_time=0)
    python benchmarks/charlm_preset.py --steps 100 --threads 1   # steadier on a shared machine

Each setting trains the preset's model (``rnnkit.train.make_config({...}, preset="shakespeare")``,
the ``rnnkit train --preset shakespeare`` run) for the same fixed number of steps from the same
seed in a fresh process (``RNNKIT_COMPILED`` is read once, at import), then samples 300
characters with the sampler (``CharLM.step`` under no_grad), after one character that pays the
one-off loads (the compiled kernels' extension; its time is reported apart). Reported: training
characters per second (steps x B x T over the run's own training clock, from its metrics.csv),
the validation loss on the whole validation split at that step, and sampled characters per
second. The ratio is the default setting's training rate over ``RNNKIT_COMPILED=0``'s (target,
issue 17: at least 1.25x, with the same validation loss within noise); ``charlm_bound.py`` has the
arithmetic of how fast this step can go on the machine.

Correctness: both runs train the same model from the same seed; the validation losses are in the
table next to each other. Needs ``../shared/data/tinyshakespeare.txt`` or a network to fetch it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from doc_section import add_doc_flag, write_section

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import json, sys, time
from pathlib import Path
from rnnkit.train import generate, load_model, make_config, train
steps, out, data = int(sys.argv[1]), sys.argv[2], sys.argv[3]
cfg = make_config({"max_iters": steps, "max_time": 0.0, "eval_every": steps, "out": out,
                   **({"data": data} if data else {})}, preset="shakespeare")
result = train(cfg, stream=open("/dev/null", "w"))
model, vocab, _ = load_model(out)
start = time.perf_counter()  # the first character pays the one-off loads (the C++ kernels)
"".join(generate(model, vocab, "ROMEO:", 1, temperature=0.8, seed=0))
first_s = time.perf_counter() - start
start = time.perf_counter()
text = "".join(generate(model, vocab, "ROMEO:", 300, temperature=0.8, seed=0))
sample_s = time.perf_counter() - start
print(json.dumps({"step": result.step, "val_loss": result.val_loss, "sample_s": sample_s,
                  "first_s": first_s, "B": cfg.batch_size, "T": cfg.seq_len}))
"""


def run(steps: int, env: dict, out: Path) -> dict:
    data = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"  # else the download cache
    done = subprocess.run([sys.executable, "-c", RUN, str(steps), str(out),
                           str(data) if data.is_file() else ""], env=env,
                          capture_output=True, text=True, timeout=3600)
    if done.returncode:
        sys.exit(f"the training run failed:\n{done.stderr[-3000:]}")
    got = json.loads(done.stdout.strip().splitlines()[-1])
    with open(out / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("elapsed_s")]
    last = max(rows, key=lambda r: int(r["step"]))
    got["train_chars_s"] = int(last["step"]) * got["B"] * got["T"] / float(last["elapsed_s"])
    return got


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch's threads in the runs (OMP_NUM_THREADS); default: torch's own")
    add_doc_flag(parser)
    args = parser.parse_args(argv)
    base = {k: v for k, v in os.environ.items() if k != "RNNKIT_COMPILED"}
    if args.threads:
        base["OMP_NUM_THREADS"] = str(args.threads)
    settings = {"default": base, "RNNKIT_COMPILED=0": {**base, "RNNKIT_COMPILED": "0"}}
    results = {}
    with tempfile.TemporaryDirectory(prefix="rnnkit-charlm-") as tmp:
        for name, env in settings.items():
            results[name] = run(args.steps, env, Path(tmp) / name.replace("=", "-"))
            print(name, results[name], file=sys.stderr, flush=True)
    ref = results["RNNKIT_COMPILED=0"]["train_chars_s"]
    lines = [f"`--preset shakespeare`, {args.steps} steps (step-based: max_time=0), seed of the "
             "preset; sampling: 300 characters at temperature 0.8", "",
             "| setting | training chars/s | ratio | validation loss (nats/char) | "
             "first sampled character (ms) | sampled chars/s after it |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['train_chars_s']:,.0f} | {r['train_chars_s'] / ref:.2f}x | "
                     f"{r['val_loss']:.4f} | {r['first_s'] * 1e3:,.0f} | "
                     f"{300 / r['sample_s']:,.0f} |")
    print("\n".join(lines))
    write_section(__file__, "\n".join(lines), threads=args.threads, argv=argv,
                  title="Character LM --preset shakespeare: default against RNNKIT_COMPILED=0")


if __name__ == "__main__":
    main()
