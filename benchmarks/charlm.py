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
Then each configuration runs ``--steps`` timed steps after one warm-up step; the table reports the
median. Ratios are against torch float32 for the same cell, measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from rnnkit.data.vocab import Vocab
from rnnkit.models.charlm import CharLM
from rnnkit.train.config import TrainConfig
from rnnkit.train.distributed import DistInfo
from rnnkit.train.engines import NumpyEngine, TorchEngine

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


def time_engine(engine, args) -> float:
    rng = np.random.default_rng(1)
    times = []
    for step in range(args.steps + 1):
        x, y = rng.integers(0, V, size=(2, args.seq_len, args.batch_size))
        t = time.perf_counter()
        engine.train_step(x, y, reset=step == 0)
        engine.apply(1e-3)
        times.append(time.perf_counter() - t)
    return args.seq_len * args.batch_size / statistics.median(times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cells", default="lstm,gru,rnn")
    p.add_argument("--no-numpy", action="store_true", help="skip the (slow) NumPy engine")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cells = args.cells.split(",")
    for cell in cells:
        check(cell, args)
    print(f"correctness: NumPy and torch engines take the same step for {', '.join(cells)}")
    print(f"H={args.hidden_size} T={args.seq_len} B={args.batch_size} V={V}, one-hot input, "
          f"{args.threads} threads, torch {torch.__version__}, median of {args.steps} steps")
    print(f"| {'cell':4} | {'engine':13} | {'chars/s':>9} | {'vs torch fp32':>13} |")
    print(f"|{'-' * 6}|{'-' * 15}|{'-' * 11}|{'-' * 15}|")
    for cell in cells:
        np_engine, torch_engine = engines(cell, args)
        _, bf16_engine = engines(cell, args, "bf16")
        rows = [("torch fp32", torch_engine), ("torch bf16", bf16_engine)]
        if not args.no_numpy:
            rows.append(("numpy fp32", np_engine))
        base = None
        for name, engine in rows:
            rate = time_engine(engine, args)
            base = base or rate
            print(f"| {cell:4} | {name:13} | {rate:9,.0f} | {rate / base:12.2f}x |", flush=True)


if __name__ == "__main__":
    main()
