"""GRU, layer-norm GRU and Elman layers on the compiled loop against torch.nn.GRU / torch.nn.RNN.

    python benchmarks/gru_cells.py                # both shapes, 5 interleaved repeats
    python benchmarks/gru_cells.py --quick        # small shape, 2 repeats
    python benchmarks/gru_cells.py --threads 1    # pin the thread count (shared machines)
    python benchmarks/gru_cells.py --profile      # and where the compiled layers' time goes

Correctness first, on float64 copies of the benchmark's own weights and input: rnnkit.FusedGRU and
rnnkit.FusedRNN, eager and compiled, must give torch.nn.GRU's / torch.nn.RNN's outputs and
gradients, and rnnkit.LayerNormGRU, eager and compiled, those of its readable loop
(``backend="loop"``). Then forward (no grad) and forward+backward (sum of the outputs) are timed,
interleaved (one call of every model per round), for:

* ``torch.nn.GRU``, ``torch.nn.RNN``   the peers: GRU rows are against torch.nn.GRU, RNN rows
                                       against torch.nn.RNN (tanh)
* ``rnnkit.FusedGRU``, ``FusedRNN``    rnnkit's fast path, eager kernels (rnnkit.nn.fast)
* ``rnnkit.LayerNormGRU``              the same with layer norm (Ba et al. 2016)
* ``... (compiled)``                   each with ``rnnkit.options(compiled=True)``: the time loop
                                       and each step's work between the products in C++

Targets (issue 17), forward+backward on the compiled loop: LayerNormGRU at most 1.10x
torch.nn.GRU, FusedGRU at most 1.00x.

``--profile``: one forward+backward of each compiled layer and of its peer under torch.profiler,
split into the time in matrix products (``aten::mm``, ``aten::addmm``, oneDNN's inner product,
MKL's packed GEMM: the per-step products with W_hh and the bulk ones for W_ih x and dW) and
the rest (each step's elementwise work, in C++ for the compiled layers, blends, Python).

Shapes: the fastrnns default (T=100, B=64, I=H=512) and a small one (T=128, B=32, I=64, H=256).
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch
from doc_section import add_doc_flag, write_section
from timing import add_common_args, checked_cases, chosen_shapes, profile_rows, time_layers
from torch import nn

import rnnkit
from rnnkit.nn.fast.compiled import load

COMPILED = " (compiled)"
#: model name -> the peer its ratio is against
PEERS = {"torch.nn.GRU": "torch.nn.GRU", "rnnkit.FusedGRU": "torch.nn.GRU",
         "rnnkit.FusedGRU" + COMPILED: "torch.nn.GRU", "rnnkit.LayerNormGRU": "torch.nn.GRU",
         "rnnkit.LayerNormGRU" + COMPILED: "torch.nn.GRU", "torch.nn.RNN": "torch.nn.RNN",
         "rnnkit.FusedRNN": "torch.nn.RNN", "rnnkit.FusedRNN" + COMPILED: "torch.nn.RNN"}


def build(I: int, H: int) -> dict[str, nn.Module]:
    """Every model of the table; a compiled row is the same module as its eager row."""
    torch.manual_seed(0)
    models = {"torch.nn.GRU": nn.GRU(I, H)}
    fused = rnnkit.FusedGRU(I, H)
    fused.load_state_dict(models["torch.nn.GRU"].state_dict())
    ln = rnnkit.LayerNormGRU(I, H)
    with torch.no_grad():  # gains and shifts away from 1 and 0, so the check tests them
        for name, p in ln.named_parameters():
            if name.startswith("ln_"):
                p.add_(0.1 * torch.randn_like(p))
    models |= {"rnnkit.FusedGRU": fused, "rnnkit.FusedGRU" + COMPILED: fused,
               "rnnkit.LayerNormGRU": ln, "rnnkit.LayerNormGRU" + COMPILED: ln,
               "torch.nn.RNN": nn.RNN(I, H)}
    rnn = rnnkit.FusedRNN(I, H)
    rnn.load_state_dict(models["torch.nn.RNN"].state_dict())
    return models | {"rnnkit.FusedRNN": rnn, "rnnkit.FusedRNN" + COMPILED: rnn}


def variant(name: str):
    """The execution choice a row is timed with, as a user sets it."""
    return rnnkit.options(compiled=name.endswith(COMPILED))


def check(models: dict[str, nn.Module], x: torch.Tensor) -> None:
    """Outputs and gradients agree (float64 copies) before anything is timed."""
    models = {name: copy.deepcopy(m).double() for name, m in models.items()}
    ln_loop = copy.deepcopy(models["rnnkit.LayerNormGRU"])
    ln_loop.backend = "loop"
    x = x.double()

    def run(m, name):
        xg = x.clone().requires_grad_(True)
        with variant(name):
            out, _ = m(xg)
        return out, torch.autograd.grad(out.square().mean(), [xg, *m.parameters()])

    for name, m in models.items():
        if name.startswith("torch.nn"):
            continue
        ref = ln_loop if "LayerNorm" in name else models[PEERS[name]]
        (out_o, g_o), (out_r, g_r) = run(m, name), run(ref, "reference")
        torch.testing.assert_close(out_o, out_r, rtol=1e-9, atol=1e-9)
        for a, b in zip(g_o, g_r):  # the input's gradient, then every parameter's
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def table(shape_name, shape, times) -> str:
    T, B, I, H = shape
    med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    lines = [
        f"\n**{shape_name}** (T={T}, B={B}, I={I}, H={H}), median of "
        f"{len(times['torch.nn.GRU']['fwd'])}\n",
        "| model | fwd ms | fwd ratio | fwd+bwd ms | fwd+bwd ratio | against |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, t in med.items():
        peer = med[PEERS[name]]
        lines.append(f"| {name} | {t['fwd'] * 1e3:.1f} | {t['fwd'] / peer['fwd']:.2f}x | "
                     f"{t['fwd+bwd'] * 1e3:.1f} | {t['fwd+bwd'] / peer['fwd+bwd']:.2f}x | "
                     f"{PEERS[name]} |")
    return "\n".join(lines)


def profile_table(models, x) -> str:
    return profile_rows(models, x, ("torch.nn.GRU", "rnnkit.FusedGRU" + COMPILED,
                                    "rnnkit.LayerNormGRU" + COMPILED, "torch.nn.RNN",
                                    "rnnkit.FusedRNN" + COMPILED), variant)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--profile", action="store_true",
                        help="also split each compiled layer's time: products against the rest")
    add_doc_flag(parser)
    args = parser.parse_args(argv)
    shapes, repeats = chosen_shapes(args)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    load()  # the compiled kernels (built on first use, about a minute): say so before timing
    tables = []
    for shape_name, shape, models, x in checked_cases(shapes, build, check):
        tables.append(table(shape_name, shape, time_layers(models, x, repeats, context=variant)))
        if args.profile:
            tables[-1] += "\n" + profile_table(models, x)
        print(tables[-1], flush=True)
    done = ("correctness: outputs and gradients checked against torch.nn.GRU / torch.nn.RNN / "
            "LayerNormGRU's readable loop first (float64)")
    print("\n" + done)
    write_section(__file__, "\n".join([*tables, "", done + "."]), threads=torch.get_num_threads(),
                  argv=argv, title="GRU, LayerNormGRU and FusedRNN: eager and compiled against "
                  "torch.nn.GRU / torch.nn.RNN")


if __name__ == "__main__":
    main()
