"""Training speed of the NumPy character LM (rnnkit.scratch.fast) against a min-char-rnn loop.

The peer is the way min-char-rnn (Karpathy, 2015) trains: one character at a time, batch 1, column
one-hot vectors, a Python loop over time for forward and backward, Adagrad. rnnkit's engine runs
the same Elman network (H=100, seq_len=25, Adagrad, clipping) on B parallel streams: a row lookup
for the input, one matmul per step for the recurrence (into preallocated arrays, in place), and
the output layer fused with the softmax cross-entropy over all T*B rows in a (V, T*B) layout.
The "K threads" rows split each batch's streams over K Python threads
(rnnkit.scratch.fast.BatchSplit, as ``charlm.fit(threads=K)`` does), one BLAS thread each. The
engine timed is rnnkit.scratch.fast.FastNumpyCharLM, the model ``charlm.fit`` trains.

First it checks that both compute the same loss and gradients on the same weights (B=1), then it
times training steps and prints characters per second and the ratio. BLAS runs on one thread for
both by default (set BENCH_THREADS=2 to give the batched engine two; the min-char-rnn loop's
matrix-vector products gain nothing from threads; on a machine busy with other jobs, two OpenBLAS
threads made a step ~30x slower, as each thread waits for the other's core). The "bound" rows
time only the matrix products a training step must do (recurrence forward and backward, dW_hh,
the output layer and its two gradients), on one thread or on K threads for K slices of the batch:
no engine of this design can be faster than that. ``--profile`` prints where one training step's
time goes, phase by phase.

The last lines put the target in the machine's own units: the matrix-product FLOPs per character
of a training step (6 H^2 + 6 V H: the recurrence forward, its backward and dW_hh; the logits,
their gradient into h and dW_ho), the GFLOP/s each row achieves, and the GFLOP/s that 100x the
loop would take, against NumPy's float32 rate on a large (2048^2) product with the same BLAS
threads: the most this machine's BLAS does, on the friendliest shape (times K for K threads).

    .venv/bin/python benchmarks/scratch_charlm.py                 # B = 64, 256, 1024, 4096
    .venv/bin/python benchmarks/scratch_charlm.py --batch 64 --seconds 5 --threads 1
    .venv/bin/python benchmarks/scratch_charlm.py --batch 64 256 --profile
    .venv/bin/python benchmarks/scratch_charlm.py --batch 128 256 512 1024 --min-slice 1   # where splitting pays
    BENCH_THREADS=2 .venv/bin/python benchmarks/scratch_charlm.py --batch 64 256 --threads 1
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ.get("BENCH_THREADS", "1"))
os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("BENCH_THREADS", "1"))
os.environ.setdefault("MKL_NUM_THREADS", os.environ.get("BENCH_THREADS", "1"))

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from matmul_rate import matmul_gflops  # noqa: E402

from rnnkit.scratch import charlm  # noqa: E402
from rnnkit.scratch.fast import MIN_SLICE, BatchSplit, FastNumpyCharLM  # noqa: E402
from rnnkit.scratch.optim import Adagrad, clip_grad_value  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"


class MinCharRNN:
    """The min-char-rnn training step, written its way: batch 1, one character per loop turn."""

    def __init__(self, model: FastNumpyCharLM):
        p = model.parameters()  # the same weights as the batched model (its parameter layout)
        self.Wxh, self.Whh = p["weight_ih_l0"].astype(np.float64), p["weight_hh_l0"].astype(np.float64)
        self.bh = (p["bias_ih_l0"] + p["bias_hh_l0"]).astype(np.float64).reshape(-1, 1)
        self.Why, self.by = p["weight_ho"].astype(np.float64), p["bias_ho"].astype(np.float64).reshape(-1, 1)
        self.V, self.H = self.Why.shape
        self.mem = [np.zeros_like(a) for a in (self.Wxh, self.Whh, self.Why, self.bh, self.by)]

    def loss_fun(self, inputs, targets, hprev):
        xs, hs, ps = {}, {-1: np.copy(hprev)}, {}
        loss = 0.0
        for t in range(len(inputs)):
            xs[t] = np.zeros((self.V, 1))
            xs[t][inputs[t]] = 1
            hs[t] = np.tanh(np.dot(self.Wxh, xs[t]) + np.dot(self.Whh, hs[t - 1]) + self.bh)
            ys = np.dot(self.Why, hs[t]) + self.by
            ps[t] = np.exp(ys - ys.max()) / np.sum(np.exp(ys - ys.max()))
            loss += -np.log(ps[t][targets[t], 0])
        dWxh, dWhh, dWhy = np.zeros_like(self.Wxh), np.zeros_like(self.Whh), np.zeros_like(self.Why)
        dbh, dby = np.zeros_like(self.bh), np.zeros_like(self.by)
        dhnext = np.zeros_like(hs[0])
        for t in reversed(range(len(inputs))):
            dy = np.copy(ps[t])
            dy[targets[t]] -= 1
            dWhy += np.dot(dy, hs[t].T)
            dby += dy
            dh = np.dot(self.Why.T, dy) + dhnext
            dhraw = (1 - hs[t] * hs[t]) * dh
            dbh += dhraw
            dWxh += np.dot(dhraw, xs[t].T)
            dWhh += np.dot(dhraw, hs[t - 1].T)
            dhnext = np.dot(self.Whh.T, dhraw)
        return loss, (dWxh, dWhh, dWhy, dbh, dby), hs[len(inputs) - 1]

    def step(self, inputs, targets, hprev, lr=0.1):
        loss, grads, h = self.loss_fun(inputs, targets, hprev)
        for d in grads:
            np.clip(d, -5, 5, out=d)  # mitigate exploding gradients
        params = (self.Wxh, self.Whh, self.Why, self.bh, self.by)
        for param, dparam, mem in zip(params, grads, self.mem):
            mem += dparam * dparam
            param += -lr * dparam / np.sqrt(mem + 1e-8)
        return loss, h


def check(text):
    """Same weights, same 25 characters: the two implementations agree on loss and gradients."""
    model = FastNumpyCharLM(sorted(set(text)), 100, dtype=np.float64, seed=0)
    idx = model.encode(text[:26])
    ref = MinCharRNN(model)
    loss_ref, g_ref, _ = ref.loss_fun(list(idx[:-1]), list(idx[1:]), np.zeros((100, 1)))
    loss, g, _ = model.loss_and_grads(idx[:-1, None], idx[1:, None])
    assert abs(loss * 25 - loss_ref) < 1e-9 * loss_ref, (loss * 25, loss_ref)  # mean vs sum
    pairs = [(g["weight_ih_l0"] * 25, g_ref[0]), (g["weight_hh_l0"] * 25, g_ref[1]),
             (g["weight_ho"] * 25, g_ref[2])]
    for a, b in pairs:
        assert np.abs(a - b).max() <= 1e-9 * max(1.0, np.abs(b).max()), np.abs(a - b).max()
    print("check: loss and gradients agree with the min-char-rnn loop (B=1, float64)")


def minchar_runner(text):
    """A function that trains the min-char-rnn loop for n chunks of 25 characters."""
    model = FastNumpyCharLM(sorted(set(text)), 100, dtype=np.float64, seed=0)
    ref, idx = MinCharRNN(model), model.encode(text)
    st = {"h": np.zeros((100, 1)), "p": 0}

    def run(n):
        for _ in range(n):
            if st["p"] + 26 > len(idx):
                st["h"], st["p"] = np.zeros((100, 1)), 0
            p = st["p"]
            _, st["h"] = ref.step(list(idx[p : p + 25]), list(idx[p + 1 : p + 26]), st["h"])
            st["p"] = p + 25
        return n * 25

    return run


def batched_runner(text, batch, dtype, threads=1, min_slice=MIN_SLICE):
    """The loop of charlm.fit (Adagrad, clipping at 5 as min-char-rnn), without its setup."""
    model = FastNumpyCharLM(sorted(set(text)), 100, dtype=dtype, seed=0)
    X, Y = charlm.stream_batches(model.encode(text), batch, 25)
    opt = Adagrad(model.parameters(), lr=0.1)
    split = BatchSplit(threads, min_slice)
    st = {"state": None, "pos": 0}

    def run(n):
        for _ in range(n):
            if st["pos"] + 25 > len(X):
                st["state"], st["pos"] = None, 0
            pos = st["pos"]
            _, grads, st["state"] = split(model.loss_and_grads, X[pos : pos + 25], Y[pos : pos + 25],
                                          st["state"])
            clip_grad_value(grads, 5.0)
            opt.step(grads)
            st["pos"] = pos + 25
        return n * 25 * batch

    return run


def matmul_runner(batch, dtype, V, H=100, T=25):
    """Only the matrix products of a training step: a bound on what the engine can reach."""
    rng = np.random.default_rng(0)
    h = rng.standard_normal((T, batch, H)).astype(dtype)
    w_hh, w_ho = rng.standard_normal((H, H)).astype(dtype), rng.standard_normal((V, H)).astype(dtype)
    d_logits = rng.standard_normal((T * batch, V)).astype(dtype)
    flat = h.reshape(T * batch, H)

    def run(n):
        for _ in range(n):
            for t in range(T):  # the recurrence forward and backward: one (B, H) x (H, H) each
                h[t] @ w_hh
                h[t] @ w_hh.T
            flat @ w_ho.T  # logits
            d_logits @ w_ho  # d h
            d_logits.T @ flat  # d W_ho
            flat.T @ flat  # d W_hh
        return n * T * batch

    return run


def threaded_matmul_runner(batch, dtype, V, threads):
    """The matrix products of a step split as BatchSplit splits it: K slices of B/K, K threads."""
    runners = [matmul_runner(batch // threads, dtype, V) for _ in range(threads)]
    pool = ThreadPoolExecutor(threads)

    def run(n):
        return sum(pool.map(lambda r: r(n), runners))

    return run


def flops_per_char(V: int, H: int = 100) -> float:
    """Matrix-product FLOPs one training step spends per character (2 per multiply-add)."""
    return 2.0 * (3 * H * H + 3 * V * H)


def peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """NumPy float32 large-matrix-product rate with the current BLAS threads (best of repeats)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    return matmul_gflops(a, b, repeats)


def measure(runners, seconds, rounds=5):
    """Median chars/s of each runner; rounds interleave them so drift hits all alike."""
    rates = {name: [] for name in runners}
    for run in runners.values():
        run(1)  # warm-up
    for _ in range(rounds):
        for name, run in runners.items():
            chars, n, t0 = 0, 1, time.perf_counter()
            while time.perf_counter() - t0 < seconds / rounds:
                chars += run(n)
            rates[name].append(chars / (time.perf_counter() - t0))
    return {name: statistics.median(r) for name, r in rates.items()}


def profile(text, batch, steps=50):
    """Median milliseconds per training step of each phase, timed by hand around each call."""
    model = FastNumpyCharLM(sorted(set(text)), 100, dtype=np.float32, seed=0)
    X, Y = charlm.stream_batches(model.encode(text), batch, 25)
    opt = Adagrad(model.parameters(), lr=0.1)
    phases = {k: [] for k in ("layer forward (lookup + loop)", "output layer + softmax loss, fwd+bwd",
                              "layer backward (loop, dW_hh, dW_ih)", "clip + Adagrad")}
    names, state = list(phases), None
    for i in range(steps):
        pos = (i * 25) % (len(X) - 25)
        t0 = time.perf_counter()
        hs, state, cache = model.rnn.forward(X[pos : pos + 25], state)
        t1 = time.perf_counter()
        _, d_hs, grads = model._head_loss_and_grads(hs, Y[pos : pos + 25].reshape(-1))
        t2 = time.perf_counter()
        _, _, rnn_grads = model.rnn.backward(d_hs, cache)
        rnn_grads.update(grads)
        t3 = time.perf_counter()
        clip_grad_value(rnn_grads, 5.0)
        opt.step(rnn_grads)
        t4 = time.perf_counter()
        for name, dt in zip(names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            phases[name].append(dt * 1e3)
    bound = matmul_runner(batch, np.float32, model.vocab_size)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        bound(1)
        times.append((time.perf_counter() - t0) * 1e3)
    med = {k: statistics.median(v) for k, v in phases.items()}
    total = sum(med.values())
    print(f"\nprofile, B={batch} (median ms per training step over {steps} steps, float32)")
    print(f"| {'phase':<40} | {'ms':>7} | {'share':>6} |")
    print(f"|{'-' * 42}|{'-' * 8}:|{'-' * 7}:|")
    for name, ms in med.items():
        print(f"| {name:<40} | {ms:>7.2f} | {ms / total:>6.0%} |")
    print(f"| {'total':<40} | {total:>7.2f} | {1:>6.0%} |")
    print(f"| {'bound: the matmuls alone':<40} | {statistics.median(times):>7.2f} | "
          f"{statistics.median(times) / total:>6.0%} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, nargs="*", default=[64, 256, 1024, 4096])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="also time the engine with the batch split over this many threads")
    parser.add_argument("--min-slice", type=int, default=MIN_SLICE,
                        help="the split's smallest slice (streams); 1 times the split at every B")
    parser.add_argument("--seconds", type=float, default=4.0, help="time per configuration")
    parser.add_argument("--profile", action="store_true", help="time each phase of a step, then stop")
    args = parser.parse_args()
    text = CORPUS.read_text()[:300_000]
    V = len(set(text))
    check(text)
    if args.profile:
        for batch in args.batch:
            profile(text, batch)
        return
    K = args.threads
    runners = {("min-char-rnn loop (B=1, float64)", 1): minchar_runner(text)}
    for batch in args.batch:
        for dtype in (np.float64, np.float32):
            name = f"rnnkit.scratch.charlm ({np.dtype(dtype).name})"
            runners[(name, batch)] = batched_runner(text, batch, dtype)
        runners[("bound: its matmuls alone (float32)", batch)] = matmul_runner(batch, np.float32, V)
        if K > 1 and batch // K >= args.min_slice:  # smaller batches are not split
            runners[(f"rnnkit.scratch.charlm, {K} threads (float32)", batch)] = batched_runner(
                text, batch, np.float32, K, args.min_slice)
            runners[(f"bound: matmuls alone, {K} threads (float32)", batch)] = threaded_matmul_runner(
                batch, np.float32, V, K)
    rates = measure(runners, args.seconds)
    peak = peak_gflops()
    base = rates[("min-char-rnn loop (B=1, float64)", 1)]
    fpc = flops_per_char(V)
    print(f"\nElman char LM, H=100, seq_len=25, V={V}, Adagrad; BLAS threads = "
          f"{os.environ['OPENBLAS_NUM_THREADS']}; median of 5 interleaved rounds")
    print(f"| {'engine':<42} | {'B':>5} | {'chars/s':>10} | {'vs loop':>8} | {'GFLOP/s':>7} |")
    print(f"|{'-' * 44}|{'-' * 6}:|{'-' * 11}:|{'-' * 9}:|{'-' * 8}:|")
    for (name, b), cps in rates.items():
        print(f"| {name:<42} | {b:>5} | {cps:>10,.0f} | {cps / base:>7.1f}x | {cps * fpc / 1e9:>7.1f} |")
    need = 100 * base * fpc / 1e9
    print(f"\nmatrix-product FLOPs per character: {fpc:,.0f} (6 H^2 + 6 V H)")
    print(f"100x the loop = {100 * base:,.0f} chars/s = {need:.1f} GFLOP/s of matrix products alone")
    print(f"NumPy float32 2048x2048 product, same threads: {peak:.1f} GFLOP/s "
          f"(100x needs {need / peak:.0%} of it, with nothing else in the step)")
    if K > 1:
        print(f"the same product in {K} threads at once, one BLAS thread each: {K * peak:.1f} GFLOP/s "
              f"at most ({need / (K * peak):.0%} of that)")


if __name__ == "__main__":
    from doc_section import recorded

    with recorded(__file__, threads=lambda: os.environ.get("OPENBLAS_NUM_THREADS"),
                  title="rnnkit.scratch's character LM: characters per second"):
        main()
