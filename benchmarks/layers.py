"""rnnkit.RNN/LSTM/GRU against torch.nn: correctness first, then forward and forward+backward time.

    python benchmarks/layers.py            # both shapes, 5 timed repeats each (a few minutes on 2 cores)
    python benchmarks/layers.py --quick    # 2 repeats, small shape only

For each cell it checks that both rnnkit paths give torch.nn's outputs and gradients on the same
weights, then times torch.nn, rnnkit's native path (backend="native": PyTorch's own kernels) and
rnnkit's readable path (backend="loop"), interleaved so drift in the machine's speed hits all
three alike, and prints the median time of each and its ratio to torch.nn (lower is faster; 1.00x
is parity). The table also goes to docs/benchmarks.md (``--no-doc`` skips that).

Shapes: the fastrnns default (T=100, B=64, I=H=512) and a small one (T=128, B=32, I=64, H=256).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from doc_section import add_doc_flag, write_section
from timing import add_common_args, chosen_shapes, time_layers

import rnnkit

#: layer name -> (torch.nn's class, rnnkit's)
LAYERS = {"RNN": (torch.nn.RNN, rnnkit.RNN), "LSTM": (torch.nn.LSTM, rnnkit.LSTM),
          "GRU": (torch.nn.GRU, rnnkit.GRU)}


def check(cell: str) -> None:
    """Both paths equal torch.nn (float64) before anything is timed."""
    ref_cls, ours_cls = LAYERS[cell]
    torch.manual_seed(0)
    ref = ref_cls(8, 16, num_layers=2, dtype=torch.float64)
    x = torch.randn(12, 4, 8, dtype=torch.float64, requires_grad=True)
    out_r, _ = ref(x)
    grads_r = torch.autograd.grad(out_r.square().sum(), [x, *ref.parameters()])
    for backend in ("native", "loop"):
        ours = ours_cls(8, 16, num_layers=2, dtype=torch.float64, backend=backend)
        ours.load_state_dict(ref.state_dict())
        out_o, _ = ours(x)
        grads_o = torch.autograd.grad(out_o.square().sum(), [x, *ours.parameters()])
        torch.testing.assert_close(out_o, out_r, rtol=1e-10, atol=1e-10)
        for a, b in zip(grads_o, grads_r):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def bench(cell: str, shape: tuple[int, int, int, int], repeats: int) -> dict[str, dict[str, float]]:
    T, B, I, H = shape
    ref_cls, ours_cls = LAYERS[cell]
    torch.manual_seed(0)
    models = {"torch.nn": ref_cls(I, H)}
    for backend in ("native", "loop"):
        m = ours_cls(I, H, backend=backend)
        m.load_state_dict(models["torch.nn"].state_dict())
        models[f"rnnkit {backend}"] = m
    results = time_layers(models, torch.randn(T, B, I), repeats)
    return {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, threads=False, shapes=False)
    parser.add_argument("--cells", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    add_doc_flag(parser)
    args = parser.parse_args()
    shapes, repeats = chosen_shapes(args)

    for cell in args.cells:
        check(cell)
    lines = [f"correctness: rnnkit native and loop paths match torch.nn for "
             f"{', '.join(args.cells)} (float64, outputs and gradients, rtol=atol=1e-10)", "",
             f"float32, median of {repeats}", "",
             "| cell | shape (T, B, I, H) | pass | torch.nn ms | rnnkit native ms | ratio | "
             "rnnkit loop ms | ratio |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("\n".join(lines), flush=True)
    for shape_name, shape in shapes.items():
        for cell in args.cells:
            r = bench(cell, shape, repeats)
            for kind in ("fwd", "fwd+bwd"):
                base = r["torch.nn"][kind]
                nat, loop = r["rnnkit native"][kind], r["rnnkit loop"][kind]
                lines.append(f"| {cell} | {shape_name} {shape} | {kind} | {base * 1e3:.1f} | "
                             f"{nat * 1e3:.1f} | {nat / base:.2f}x | {loop * 1e3:.1f} | "
                             f"{loop / base:.2f}x |")
                print(lines[-1], flush=True)
    write_section(__file__, "\n".join(lines), threads=torch.get_num_threads(),
                  title="Layers: rnnkit.RNN/LSTM/GRU against torch.nn")


if __name__ == "__main__":
    main()
