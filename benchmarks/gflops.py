"""Achieved GFLOP/s of recurrent layers as a fraction of this machine's matrix-product rate.

    python benchmarks/gflops.py                # both shapes, float32, 3 repeats
    python benchmarks/gflops.py --quick        # small shape, 2 repeats
    python benchmarks/gflops.py --bf16         # also under torch.autocast("cpu", torch.bfloat16)
    python benchmarks/gflops.py --threads 1    # pin the thread count (shared machines)

The limit is measured, not looked up: the best rate of a large square matrix product (2048^3,
float32 by torch.mm or oneDNN, whichever is faster, and bfloat16 with --bf16) on this machine
with the same thread count. A recurrent layer can at best approach it: its FLOPs are matrix
products too (x W_ih^T and h W_hh^T per step, and two products of each size in backward), counted
by ``custom_cells.matmul_flops``; everything else (gates, layer norm, the Python loop, memory
traffic) is overhead that lowers the fraction.

Correctness first: the models are built and checked exactly as in ``benchmarks/custom_cells.py``
(against torch.nn.LSTM and the plain loop, on float64 copies of the benchmark's own weights).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from custom_cells import build, check, matmul_flops  # noqa: E402
from doc_section import add_doc_flag, recorded  # noqa: E402
from matmul_rate import matmul_gflops  # noqa: E402
from timing import (  # noqa: E402
    add_common_args,
    checked_cases,
    chosen_shapes,
    onednn_gflops,
    time_layers,
)

MODELS = ("torch.nn.LSTM", "rnnkit.FusedLSTM", "rnnkit.LayerNormLSTM")


def peak_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """The better of torch.mm (MKL, which runs its AVX2 code on AMD CPUs) and oneDNN's inner
    product (what torch's LSTM kernel and the fast path use) on an n^3 product; bf16: torch.mm."""
    rate = matmul_gflops(torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype), repeats)
    if dtype == torch.float32:
        rate = max(rate, onednn_gflops(n, n, n, repeats))
    return rate


class BF16Autocast(torch.nn.Module):
    """A layer run under CPU bf16 autocast, its output cast back to float32 (autocast around
    the forward only, as PyTorch recommends; the backward follows the forward's dtypes)."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, state = self.layer(x)
        return out.float(), state


def time_models(models, x, repeats: int, autocast: bool) -> dict[str, dict[str, float]]:
    """Median seconds of each model in MODELS, timed interleaved by timing.time_layers."""
    chosen = {name: BF16Autocast(models[name]) if autocast else models[name] for name in MODELS}
    times = time_layers(chosen, x, repeats)
    return {name: {k: statistics.median(v) for k, v in t.items()} for name, t in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, repeats=3, shapes=False)
    parser.add_argument("--bf16", action="store_true", help="also time under bf16 autocast")
    add_doc_flag(parser)
    args = parser.parse_args(argv)
    shapes, repeats = chosen_shapes(args)
    limits = {"float32": peak_gflops(torch.float32)}
    if args.bf16:
        limits["bf16 autocast"] = peak_gflops(torch.bfloat16)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    for name, rate in limits.items():
        print(f"limit, {name}: {rate:.1f} GFLOP/s (2048^3 matrix product)")
    print("\n| shape | precision | model | fwd GFLOP/s | fwd % of limit | fwd+bwd GFLOP/s | "
          "fwd+bwd % of limit |")
    print("|---|---|---|---:|---:|---:|---:|")
    for shape_name, (T, B, I, H), models, x in checked_cases(shapes, build, check):
        for precision, limit in limits.items():
            times = time_models(models, x, repeats, autocast=precision != "float32")
            for name, t in times.items():
                f = matmul_flops(T, B, I, H, False) / t["fwd"] / 1e9
                fb = matmul_flops(T, B, I, H, True) / t["fwd+bwd"] / 1e9
                print(f"| {shape_name} | {precision} | {name} | {f:.1f} | {100 * f / limit:.0f}% | "
                      f"{fb:.1f} | {100 * fb / limit:.0f}% |", flush=True)


if __name__ == "__main__":
    with recorded(__file__, threads=torch.get_num_threads,
                  title="Achieved GFLOP/s against this machine's matrix-product rate"):
        main()
