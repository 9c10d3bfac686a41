"""The NumPy LSTM (rnnkit.scratch) against torch.nn.LSTM on CPU: correctness first, then time.

    .venv/bin/python benchmarks/scratch_lstm.py                  # LSTM, small core shape, 7 repeats
    .venv/bin/python benchmarks/scratch_lstm.py --cells LSTM GRU RNN --repeats 5
    BENCH_THREADS=2 .venv/bin/python benchmarks/scratch_lstm.py  # both on 2 threads
    .venv/bin/python benchmarks/scratch_lstm.py --textbook       # also the textbook layer's rows

The "scratch" rows time the speed-tuned layers (rnnkit.scratch.fast.LSTM, ...: what charlm.fit and
``rnnkit train --engine numpy`` run); ``--textbook`` adds rows for the textbook layers
(rnnkit.scratch.LSTM, ...: one lstm_step call per time step), against the same torch.nn timing.

Shape: the small core benchmark shape of benchmarks/layers.py, T=128, B=32, I=64, H=256. It first
checks that scratch's outputs and every gradient equal torch autograd on the same weights (float64
to 1e-10 on a small multi-layer bidirectional model; float32 to 1e-4 at the benchmark shape), then
times forward and forward+backward (loss = sum of outputs) of both, interleaved so drift in the
machine's speed hits both alike, and prints medians and the ratio scratch / torch (lower is faster).
NumPy's BLAS and torch run on the same number of threads (1 unless BENCH_THREADS says otherwise).
"""

from __future__ import annotations

import os

THREADS = os.environ.get("BENCH_THREADS", "1")
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = THREADS  # before numpy loads its BLAS

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rnnkit import scratch  # noqa: E402

SHAPE = (128, 32, 64, 256)  # T, B, I, H
CELLS = {"LSTM": (scratch.fast.LSTM, torch.nn.LSTM), "GRU": (scratch.fast.GRU, torch.nn.GRU),
         "RNN": (scratch.fast.RNN, torch.nn.RNN)}
TEXTBOOK = {"LSTM": scratch.LSTM, "GRU": scratch.GRU, "RNN": scratch.RNN}


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def _pair(cell, I, H, dtype, textbook=False, **kw):
    ours_cls, ref_cls = CELLS[cell]
    ours = (TEXTBOOK[cell] if textbook else ours_cls)(I, H, dtype=dtype, seed=0, **kw)
    ref = ref_cls(I, H, dtype=getattr(torch, np.dtype(dtype).name), **kw)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return ours, ref


def check(cell, T, B, I, H, dtype, tol, textbook=False, **kw):
    """Outputs, d_x and every parameter gradient equal torch autograd (loss = sum of outputs)."""
    ours, ref = _pair(cell, I, H, dtype, textbook, **kw)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(dtype)
    out, _, cache = ours.forward(x)
    d_x, _, grads = ours.backward(np.ones_like(out), cache)
    tx = torch.tensor(x, requires_grad=True)
    r_out, _ = ref(tx)
    r_out.sum().backward()
    errors = {"output": _rel(out, r_out.detach().numpy()), "d_x": _rel(d_x, tx.grad.numpy())}
    errors.update({n: _rel(grads[n], p.grad.numpy()) for n, p in ref.named_parameters()})
    worst = max(errors, key=errors.get)
    assert errors[worst] < tol, f"{cell} {np.dtype(dtype).name}: {worst} off by {errors[worst]:.2e}"
    return errors[worst]


def bench(cell, dtype, repeats, textbook=False):
    T, B, I, H = SHAPE
    ours, ref = _pair(cell, I, H, dtype, textbook)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(dtype)
    tx = torch.from_numpy(x)
    txg = tx.clone().requires_grad_(True)
    ones = np.ones((T, B, H), dtype)

    def ours_fwd():
        ours.forward(x)

    def ours_fwd_bwd():
        out, _, cache = ours.forward(x)
        ours.backward(ones, cache)

    def ref_fwd():
        with torch.no_grad():
            ref(tx)

    def ref_fwd_bwd():
        out, _ = ref(txg)
        out.sum().backward()

    results = {}
    for kind, fns in (("fwd", (ours_fwd, ref_fwd)), ("fwd+bwd", (ours_fwd_bwd, ref_fwd_bwd))):
        times = ([], [])
        for fn in fns:
            fn()  # warm-up
        for _ in range(repeats):  # interleaved
            for k, fn in enumerate(fns):
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        results[kind] = tuple(statistics.median(t) for t in times)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["LSTM"], choices=list(CELLS))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--textbook", action="store_true",
                        help="also time the textbook layers (one cell step per time step)")
    args = parser.parse_args()
    torch.set_num_threads(int(THREADS))
    engines = (False, True) if args.textbook else (False,)
    for cell in args.cells:
        kw = {"proj_size": 3} if cell == "LSTM" else {}
        for textbook in engines:
            e64 = check(cell, 7, 3, 5, 8, np.float64, 1e-10, textbook, num_layers=2,
                        bidirectional=True, **kw)
            e32 = check(cell, *SHAPE, np.float32, 1e-4, textbook)
            print(f"check {cell}{' (textbook)' if textbook else ''}: equals torch autograd, float64 "
                  f"worst {e64:.1e} (2 layers, bidirectional), float32 worst {e32:.1e} at {SHAPE}")
    print(f"\nnumpy {np.__version__}, torch {torch.__version__}, {THREADS} thread(s), "
          f"shape (T, B, I, H) = {SHAPE}, median of {args.repeats}\n")
    print("| cell | dtype | pass | scratch ms | torch.nn ms | scratch / torch |")
    print("|---|---|---|---:|---:|---:|")
    for cell in args.cells:
        for textbook in engines:
            name = f"{cell} (textbook)" if textbook else cell
            for dtype in (np.float32, np.float64):
                for kind, (ours, ref) in bench(cell, dtype, args.repeats, textbook).items():
                    print(f"| {name} | {np.dtype(dtype).name} | {kind} | {ours * 1e3:.1f} | "
                          f"{ref * 1e3:.1f} | {ours / ref:.2f}x |", flush=True)


if __name__ == "__main__":
    from doc_section import recorded

    with recorded(__file__, threads=int(THREADS),
                  title="rnnkit.scratch's LSTM against torch.nn.LSTM"):
        main()
