"""How far the char LM's ``--preset shakespeare`` training step can go on this machine.

    python benchmarks/charlm_bound.py                # 1 and 2 threads, 20 interleaved rounds
    python benchmarks/charlm_bound.py --threads 1 --rounds 5 --no-doc

Issue 17 asks the preset to train 1.25x as many characters per second as with
``RNNKIT_COMPILED=0``. This script measures, in one process and interleaved round by round:

* one training step of the preset (the trainer's ``TorchEngine``: forward, loss, backward,
  gradient clipping, then the AdamW update) on a (T, B) window of random characters;
* the step's LSTM alone, forward and backward, on the layer the model holds (the stock
  ``rnnkit.LSTM``, which trains on torch's kernel), and on ``rnnkit.FusedLSTM`` with the
  compiled loop, the fastest LSTM of rnnkit's own;
* the machine's product rate: the best GFLOP/s of one large float32 product (2048 x 2048 x 2048)
  by oneDNN (torch's LSTM kernel and rnnkit's fast path use it) and by torch.mm (MKL), and of the
  per-step recurrent product (B, H) x (H, 4H), which the time loop cannot batch.

Then the arithmetic: the LSTM's floating-point work per step is 3 x 2 x T x B x 4H x (E + H)
(forward, the input gradients, the weight gradients). At 1.25x, the whole step may take
``step / 1.25``; the part that is not the LSTM stays, so the LSTM may take
``step / 1.25 - rest``. Dividing its work by that time gives the rate an LSTM kernel would have to
sustain over the whole forward and backward, elementwise work included, which the table sets
against the best rate oneDNN reaches on one product alone on this machine, and against the rate
torch's kernel sustains now. The last row is the same with the rest taking no time at all.

Correctness: before timing, the FusedLSTM's output and gradients are checked against the stock
layer's with the same weights (float32, 1e-4).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from doc_section import add_doc_flag, write_section
from matmul_rate import matmul_gflops
from timing import onednn_gflops

import rnnkit
from rnnkit.models.charlm import CharLM
from rnnkit.train import make_config
from rnnkit.train.distributed import DistInfo
from rnnkit.train.engines import TorchEngine

TARGET = 1.25
VOCAB = 65  # tinyshakespeare's characters


def lstm_call(layer, e, state, grad):
    """The closure timing one forward and backward of ``layer`` on the embedded window ``e``."""

    def call():
        out, _ = layer(e, state)
        out.backward(grad)
    return call


def check_fused(model, fused, e, state, grad) -> None:
    """FusedLSTM with the model's weights computes what the model's LSTM computes."""
    fused.load_state_dict(model.rnn.state_dict())
    got, want = [], []
    for layer, into in ((fused, got), (model.rnn, want)):
        layer.zero_grad()
        x = e.detach().requires_grad_(True)
        out, _ = layer(x, state)
        out.backward(grad)
        into += [out, x.grad, *(p.grad for p in layer.parameters())]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def measure(rounds: int) -> dict:
    cfg = make_config({}, preset="shakespeare")
    T, B, E, H = cfg.seq_len, cfg.batch_size, cfg.embed_size, cfg.hidden_size
    torch.manual_seed(cfg.seed)
    model = CharLM(VOCAB, cell=cfg.cell, hidden_size=H, num_layers=cfg.num_layers,
                   embed_size=E, dropout=cfg.dropout)
    engine = TorchEngine(model, cfg, torch.device("cpu"), DistInfo())
    rng = np.random.default_rng(0)
    x, y = (rng.integers(0, VOCAB, (T, B)).astype(np.int64) for _ in range(2))
    e = torch.randn(T, B, E, requires_grad=True)
    state = tuple(torch.zeros(1, B, H) for _ in range(2))
    grad = torch.randn(T, B, H)
    fused = rnnkit.FusedLSTM(E, H)
    check_fused(model, fused, e, state, grad)

    def train_step():
        engine.train_step(x, y, reset=False)
        engine.apply(cfg.lr)

    calls = {"step": train_step, "lstm": lstm_call(model.rnn, e, state, grad),
             "fused": lstm_call(fused, e, state, grad)}
    times = {k: [] for k in calls}
    for r in range(rounds + 2):  # two warm-up rounds
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            if r >= 2:
                times[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}/{rounds + 2}", file=sys.stderr, flush=True)
    got = {k: float(np.median(v)) for k, v in times.items()}
    got["large_mkl"] = matmul_gflops(torch.randn(2048, 2048), torch.randn(2048, 2048))
    got["per_step"] = onednn_gflops(B, H, 4 * H, repeats=200)
    # the best the machine showed: a large product, d W_hh's (4H, T B) x (T B, H), or the per-step one
    got["large"] = max(onednn_gflops(2048, 2048, 2048, repeats=10),
                       onednn_gflops(4 * H, T * B, H, repeats=30), got["per_step"])
    got["flops"] = 3 * 2 * T * B * 4 * H * (E + H)
    got["shape"] = (T, B, E, H)
    return got


def table(m: dict) -> str:
    step, lstm, fused = m["step"], m["lstm"], m["fused"]
    rest = step - lstm
    allowed = step / TARGET - rest
    gflop = m["flops"] / 1e9
    need = gflop / allowed if allowed > 0 else float("inf")
    best = m["large"]
    T, B, E, H = m["shape"]
    rows = [
        ("training step (fwd, loss, bwd, clip, AdamW)", f"{step * 1e3:.1f} ms"),
        ("of which torch's LSTM kernel, fwd+bwd", f"{lstm * 1e3:.1f} ms"),
        ("of which the rest", f"{rest * 1e3:.1f} ms"),
        ("FusedLSTM (compiled loop), fwd+bwd", f"{fused * 1e3:.1f} ms ({fused / lstm:.2f}x)"),
        ("the LSTM's work per step", f"{gflop:.2f} GFLOP"),
        ("rate of torch's LSTM kernel", f"{gflop / lstm:.0f} GFLOP/s ({gflop / lstm / best:.0%})"),
        ("oneDNN's best product rate (= 100%)", f"{best:.0f} GFLOP/s"),
        ("a 2048³ product by torch.mm (MKL)", f"{m['large_mkl']:.0f} GFLOP/s"),
        (f"a per-step product ({B}x{H})·({H}x{4 * H})", f"{m['per_step']:.0f} GFLOP/s"),
        (f"the step at {TARGET}x", f"{step / TARGET * 1e3:.1f} ms"),
        ("time left for the LSTM, rest unchanged", f"{allowed * 1e3:.1f} ms"),
        ("rate an LSTM would need", f"{need:.0f} GFLOP/s ({need / best:.0%})"),
        ("the same with the rest at zero", f"{gflop / (step / TARGET):.0f} GFLOP/s "
         f"({gflop / (step / TARGET) / best:.0%})"),
    ]
    lines = [f"preset shapes: T={T}, B={B}, E={E}, H={H}, one layer; medians of interleaved rounds; "
             "percentages of oneDNN's best product rate (of a 2048³ product, one shaped like "
             "d W_hh, and the per-step one)",
             "", "| quantity | value |", "|---|---:|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="torch.set_num_threads, one table each")
    add_doc_flag(parser)
    args = parser.parse_args(argv)
    parts = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        parts.append(f"### {threads} thread(s)\n\n{table(measure(args.rounds))}\n")
        print(parts[-1], flush=True)
    write_section(__file__, "\n".join(parts), argv=argv,
                  threads=", ".join(map(str, args.threads)), title="Character LM --preset shakespeare: the bound on a faster training step")


if __name__ == "__main__":
    main()
