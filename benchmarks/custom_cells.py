"""Custom cells near native speed: LayerNormLSTM on the fast path against torch.nn.LSTM and a loop.

    python benchmarks/custom_cells.py               # both shapes, 5 interleaved repeats
    python benchmarks/custom_cells.py --quick       # small shape, 2 repeats
    python benchmarks/custom_cells.py --threads 1   # pin the thread count (shared machines)
    python benchmarks/custom_cells.py --shapes small --threads 1 --repeats 9
    python benchmarks/custom_cells.py --profile     # and where the default rows' time goes

Correctness first: on float64 copies of the benchmark's own weights and inputs, rnnkit.LSTM (native
path) and FusedLSTM (fast path) must give torch.nn.LSTM's outputs and gradients, and LayerNormLSTM
on the fast path those of the plain Python-loop LayerNormLSTM (see ``check``). Then forward (no
grad) and forward+backward (sum of the outputs) are timed for:

* ``torch.nn.LSTM``                 PyTorch's own kernels (the peer every ratio is against)
* ``rnnkit.LSTM``                   rnnkit's native path (the same kernels, via rnnkit.nn.native)
* ``rnnkit.FusedLSTM``              rnnkit's fast path with the default options: the compiled
                                    time loop (C++, built on first use) and oneDNN's products
* ``... (eager: compiled=False)``   the same under ``rnnkit.options(compiled=False)``: each
                                    step's work by eager ATen kernels from a Python loop
* ``rnnkit.LayerNormLSTM``          the same two rows with layer norm (Ba et al. 2016)
* ``loop LayerNormLSTM``            a cell module with nn.LayerNorm stepped by a Python loop over
                                    time, autograd for the backward: how users write it today
* ``... (no workspace reuse)``      LayerNormLSTM with ``rnnkit.options(workspace=False)`` (fresh
                                    buffers every call), to show what the buffer reuse is worth
* ``... (gemm=torch)``, ``(gemm=mkl_packed)``   LayerNormLSTM with the per-step products by
                                    ``torch.mm`` or MKL's packed GEMM instead of oneDNN's
                                    (``rnnkit.options(gemm=...)``), to show what the choice is worth

The forward columns run under ``torch.no_grad``: the fast path's inference forward, which keeps
nothing for a backward. ``--profile`` adds, per shape, where one forward+backward's time goes
(matrix products against the rest, torch.profiler) for torch.nn.LSTM and the default rows.

Runs are interleaved (one of each model per round), so drift in the machine's speed hits all alike;
the table gives the median, the ratio to torch.nn.LSTM (lower is faster; target for the fused
LayerNormLSTM forward+backward: 1.10x or less, FusedLSTM 1.00x, LayerNormLSTM forward 1.10x) and the matrix-product GFLOP/s achieved
(see benchmarks/gflops.py for that rate as a fraction of the machine's).

Shapes: the fastrnns default (T=100, B=64, I=H=512) and a small one (T=128, B=32, I=64, H=256).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics

import torch
from doc_section import add_doc_flag, write_section
from timing import (
    add_common_args,
    checked_cases,
    chosen_shapes,
    profile_rows,
    time_layers,
)
from torch import nn

import rnnkit
from rnnkit.nn.fast.compiled import CPUKernelsUnavailable, load
from rnnkit.nn.fast.products import mkl_packed_available

NO_REUSE = "rnnkit.LayerNormLSTM (no workspace reuse)"
NO_PACK = "rnnkit.LayerNormLSTM (gemm=torch)"
MKL = "rnnkit.LayerNormLSTM (gemm=mkl_packed)"
EAGER = " (eager: compiled=False)"


class LoopLayerNormLSTMCell(nn.Module):
    """A layer-norm LSTM cell the usual way: nn.LayerNorm modules, one step per call."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.weight_ih = nn.Parameter(torch.randn(4 * hidden_size, input_size) / hidden_size**0.5)
        self.weight_hh = nn.Parameter(torch.randn(4 * hidden_size, hidden_size) / hidden_size**0.5)
        self.ln_ih = nn.LayerNorm(4 * hidden_size)  # its shift plays the role of the bias
        self.ln_hh = nn.LayerNorm(4 * hidden_size, bias=False)
        self.ln_c = nn.LayerNorm(hidden_size)

    def forward(self, x, state):
        h, c = state
        gates = self.ln_ih(x @ self.weight_ih.t()) + self.ln_hh(h @ self.weight_hh.t())
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(self.ln_c(c))
        return h, c


class LoopLayerNormLSTM(nn.Module):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.cell = LoopLayerNormLSTMCell(input_size, hidden_size)
        self.hidden_size = hidden_size

    def forward(self, x):
        h = c = x.new_zeros(x.shape[1], self.hidden_size)
        outs = []
        for x_t in x.unbind(0):
            h, c = self.cell(x_t, (h, c))
            outs.append(h)
        return torch.stack(outs), (h, c)


def copy_into_loop(ours: rnnkit.LayerNormLSTM, loop: LoopLayerNormLSTM) -> None:
    """The same function in both parameterisations (LN shift = b_ih + b_hh)."""
    cell = loop.cell
    with torch.no_grad():
        cell.weight_ih.copy_(ours.weight_ih_l0)
        cell.weight_hh.copy_(ours.weight_hh_l0)
        cell.ln_ih.weight.copy_(ours.ln_ih_weight_l0)
        cell.ln_ih.bias.copy_(ours.bias_ih_l0 + ours.bias_hh_l0)
        cell.ln_hh.weight.copy_(ours.ln_hh_weight_l0)
        cell.ln_c.weight.copy_(ours.ln_cell_weight_l0)
        cell.ln_c.bias.copy_(ours.ln_cell_bias_l0)


def build(I: int, H: int) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    ref = nn.LSTM(I, H)
    models = {"torch.nn.LSTM": ref}
    for name, cls in (("rnnkit.LSTM", rnnkit.LSTM), ("rnnkit.FusedLSTM", rnnkit.FusedLSTM)):
        m = cls(I, H)
        m.load_state_dict(ref.state_dict())
        models[name] = m
    models["rnnkit.FusedLSTM" + EAGER] = models["rnnkit.FusedLSTM"]  # the same module
    ln = rnnkit.LayerNormLSTM(I, H)
    with torch.no_grad():  # gains and shifts away from 1 and 0, so the check tests them
        for name, p in ln.named_parameters():
            if name.startswith("ln_"):
                p.add_(0.1 * torch.randn_like(p))
    loop = LoopLayerNormLSTM(I, H)
    copy_into_loop(ln, loop)
    models |= {"rnnkit.LayerNormLSTM": ln, "rnnkit.LayerNormLSTM" + EAGER: ln,
               "loop LayerNormLSTM": loop, NO_REUSE: ln, NO_PACK: ln}
    if mkl_packed_available():  # only where the build has it
        models[MKL] = ln
    return models


#: the execution choices each variant row is timed with (rnnkit.options, as a user sets them)
VARIANTS = {
    NO_REUSE: {"workspace": False},  # fresh buffers, none kept
    NO_PACK: {"gemm": "torch"},  # torch.mm per step
    MKL: {"gemm": "mkl_packed"},  # MKL's packed GEMM per step
    "rnnkit.FusedLSTM" + EAGER: {"compiled": False},
    "rnnkit.LayerNormLSTM" + EAGER: {"compiled": False},
}


def variant(name: str):
    """The context a model's row is timed in: its VARIANTS choices, or none."""
    return rnnkit.options(**VARIANTS[name]) if name in VARIANTS else contextlib.nullcontext()


def check(models: dict[str, nn.Module], x: torch.Tensor) -> None:
    """Outputs and gradients agree before anything is timed.

    The check runs on float64 copies of the benchmark's own models and input: a layer-norm LSTM
    over 100+ steps amplifies float32 rounding to ~1e-3 (both implementations drift from the
    float64 result by that much), which would hide a real error; in float64 they agree to 1e-9.
    """
    models = {name: copy.deepcopy(m).double() for name, m in models.items()}
    copy_into_loop(models["rnnkit.LayerNormLSTM"], models["loop LayerNormLSTM"])  # b_ih + b_hh
    x = x.double()

    def run(m):
        xg = x.clone().requires_grad_(True)
        out, _ = m(xg)
        grads = torch.autograd.grad(out.square().mean(), [xg, *m.parameters()])
        return out, grads

    pairs = [("rnnkit.LSTM", "torch.nn.LSTM"), ("rnnkit.FusedLSTM", "torch.nn.LSTM"),
             ("rnnkit.FusedLSTM" + EAGER, "torch.nn.LSTM"),
             ("rnnkit.LayerNormLSTM", "loop LayerNormLSTM"),
             ("rnnkit.LayerNormLSTM" + EAGER, "loop LayerNormLSTM")]
    for ours, ref in pairs:
        with variant(ours):
            out_o, g_o = run(models[ours])
        out_r, g_r = run(models[ref])
        torch.testing.assert_close(out_o, out_r, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(g_o[0], g_r[0], rtol=1e-9, atol=1e-9)  # input gradient
        if ref == "torch.nn.LSTM":  # same parameter layout: every weight gradient too
            for a, b in zip(g_o[1:], g_r[1:]):
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def matmul_flops(T: int, B: int, I: int, H: int, backward: bool) -> float:
    """Matrix-product FLOPs of one LSTM layer: x W_ih^T and h W_hh^T per step (2 flops per MAC);
    the backward does two products of the same size for each (input and weight gradients)."""
    fwd = 2.0 * T * B * (I + H) * 4 * H
    return 3 * fwd if backward else fwd


def measure(models, x, repeats: int) -> dict[str, dict[str, list[float]]]:
    return time_layers(models, x, repeats, context=variant)


def table(shape_name, shape, times) -> str:
    T, B, I, H = shape
    ref = {k: statistics.median(times["torch.nn.LSTM"][k]) for k in ("fwd", "fwd+bwd")}
    lines = [
        f"\n**{shape_name}** (T={T}, B={B}, I={I}, H={H}), median of {len(times['torch.nn.LSTM']['fwd'])}\n",
        "| model | fwd ms | fwd ratio | fwd+bwd ms | fwd+bwd ratio | fwd+bwd GFLOP/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, t in times.items():
        f, fb = statistics.median(t["fwd"]), statistics.median(t["fwd+bwd"])
        gflops = matmul_flops(T, B, I, H, True) / fb / 1e9
        lines.append(
            f"| {name} | {f * 1e3:.1f} | {f / ref['fwd']:.2f}x | {fb * 1e3:.1f} | "
            f"{fb / ref['fwd+bwd']:.2f}x | {gflops:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--profile", action="store_true",
                        help="also split the default rows' time: products against the rest")
    add_doc_flag(parser)
    args = parser.parse_args(argv)
    shapes, repeats = chosen_shapes(args)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    notes = []
    try:
        load()  # built on first use (minutes): before anything is timed
    except CPUKernelsUnavailable as e:
        notes.append(f"(the compiled kernels are unavailable, the default rows run eager: {e})")
        print(notes[-1])
    tables = []
    for shape_name, shape, models, x in checked_cases(shapes, build, check):
        tables.append(table(shape_name, shape, measure(models, x, repeats)))
        if args.profile:
            tables[-1] += "\n" + profile_rows(
                models, x, ("torch.nn.LSTM", "rnnkit.FusedLSTM", "rnnkit.LayerNormLSTM"), variant)
        print(tables[-1], flush=True)
    done = "correctness: outputs and gradients checked against torch.nn.LSTM / the loop first"
    print("\n" + done)
    write_section(__file__, "\n".join([*notes, *tables, "", done + "."]),
                  threads=torch.get_num_threads(), argv=argv, title="Custom cells: LayerNormLSTM and "
                  "FusedLSTM on the fast path against torch.nn.LSTM")


if __name__ == "__main__":
    main()
