"""Training speed of the character LM: characters per second for each cell and engine.

    .venv/bin/python benchmarks/charlm.py                       # H=256, T=64, B=32, 2 threads
    .venv/bin/python benchmarks/charlm.py --hidden-size 512 --threads 2 --steps 8

One training step = forward over a (T, B) window from the carried state, cross-entropy, backward,
gradient clipping, one AdamW update: exactly what ``rnnkit train`` does per step (the engines of
rnnkit.train.engines). Engines: ``torch`` (rnnkit.nn layers, PyTorch's fused kernels) in float32 and
under bf16 autocast, and ``numpy`` (rnnkit.scratch, hand-written BPTT). All rows train the same
model: one-hot input (the NumPy engine's model), so the ratios compare engines, not models.

Correctness first: for each cell, one step from the same weights must give the same loss and the
same updated weights in both engines (float32 tolerance), or the script stops before timing.
Then each configuration runs ``--steps`` timed steps after two warm-up steps; the table reports the
medians of wall-clock and of this process's CPU time (the second is steadier on a shared machine;
with 2 threads it counts both). Ratios are against torch float32 for the same cell, same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

# Both engines get the same number of threads: NumPy's BLAS reads these before it loads.
_THREADS = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv[:-1] else "2"
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _THREADS

import numpy as np  # noqa: E402
import torch  # noqa: E402
from doc_section import add_doc_flag, recorded  # noqa: E402

from rnnkit.data.vocab import Vocab  # noqa: E402
from rnnkit.models.charlm import CharLM  # noqa: E402
from rnnkit.train.config import TrainConfig  # noqa: E402
from rnnkit.train.distributed import DistInfo  # noqa: E402
from rnnkit.train.engines import NumpyEngine, TorchEngine  # noqa: E402

V = 65  # tinyshakespeare's vocabulary size


def engines(cell: str, args, precision: str = "fp32"):
    vocab = Vocab(tuple(chr(32 + i) for i in range(V)))
    cfg = TrainConfig(cell=cell, hidden_size=args.hidden_size, embed_size=0, lr=1e-3,
                      precision=precision, seed=0)
    np_engine = NumpyEngine(vocab, cfg)
    model = CharLM(V, cell=cell, hidden_size=args.hidden_size, embed_size=0)
    model.load_state_dict(np_engine.weights())
    return np_engine, TorchEngine(model, cfg, torch.device("cpu"), DistInfo())


def check(cell: str, args) -> None:
    np_engine, torch_engine = engines(cell, args)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, V, size=(2, 16, 4))
    la, _ = np_engine.train_step(x, y, reset=True)
    lb, _ = torch_engine.train_step(x, y, reset=True)
    np_engine.apply(1e-3)
    torch_engine.apply(1e-3)
    assert abs(la - lb) < 1e-4 * abs(lb), (cell, la, lb)
    for key, value in np_engine.weights().items():
        torch.testing.assert_close(value, torch_engine.weights()[key], rtol=1e-4, atol=1e-5)


def time_engine(engine, args) -> tuple[float, float]:
    """(chars per wall-clock second, chars per CPU second of this process), medians."""
    rng = np.random.default_rng(1)
    wall, cpu = [], []
    for step in range(args.steps + 2):
        x, y = rng.integers(0, V, size=(2, args.seq_len, args.batch_size))
        t, c = time.perf_counter(), time.process_time()
        engine.train_step(x, y, reset=step == 0)
        engine.apply(1e-3)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    chars = args.seq_len * args.batch_size
    return chars / statistics.median(wall[2:]), chars / statistics.median(cpu[2:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cells", default="lstm,gru,rnn")
    p.add_argument("--no-numpy", action="store_true", help="skip the (slow) NumPy engine")
    add_doc_flag(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cells = args.cells.split(",")
    for cell in cells:
        check(cell, args)
    print(f"correctness: NumPy and torch engines take the same step for {', '.join(cells)}")
    print(f"H={args.hidden_size} T={args.seq_len} B={args.batch_size} V={V}, one-hot input, "
          f"{args.threads} threads, torch {torch.__version__}, median of {args.steps} steps")
    print(f"| {'cell':4} | {'engine':10} | {'chars/s':>9} | {'vs torch fp32':>13} | "
          f"{'chars/CPU-s':>11} | {'vs torch fp32':>13} |")
    print(f"|{'-' * 6}|{'-' * 12}|{'-' * 11}|{'-' * 15}|{'-' * 13}|{'-' * 15}|")
    for cell in cells:
        np_engine, torch_engine = engines(cell, args)
        _, bf16_engine = engines(cell, args, "bf16")
        rows = [("torch fp32", torch_engine), ("torch bf16", bf16_engine)]
        if not args.no_numpy:
            rows.append(("numpy fp32", np_engine))
        base = None
        for name, engine in rows:
            rate, cpu_rate = time_engine(engine, args)
            base = base or (rate, cpu_rate)
            print(f"| {cell:4} | {name:10} | {rate:9,.0f} | {rate / base[0]:12.2f}x | "
                  f"{cpu_rate:11,.0f} | {cpu_rate / base[1]:12.2f}x |", flush=True)


if __name__ == "__main__":
    with recorded(__file__, threads=torch.get_num_threads,
                  title="Character LM: training speed per cell and engine"):
        main()
