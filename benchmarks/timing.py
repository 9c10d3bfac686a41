"""Timing shared by the layer benchmarks (layers.py, custom_cells.py, gru_cells.py, gflops.py).

Their common flags (``add_common_args``: --quick, --repeats, --threads, --shapes) and what they
choose (``chosen_shapes``); each shape's models checked before anything is timed
(``checked_cases``). Every model's forward (under no_grad) and forward+backward
(``out.sum().backward()``) on one input, interleaved: each round times one call of every model, so drift in the machine's speed
(another job, frequency changes) hits all of them alike. Not a library module: the scripts put
this folder on ``sys.path`` (Python does that for the script's own folder).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator

import torch

#: the fastrnns default (T, B, I, H) and a small shape
SHAPES = {"fastrnns": (100, 64, 512, 512), "small": (128, 32, 64, 256)}
#: the profiler's names of the matrix products: ATen's, MKL's packed GEMM, oneDNN's inner product
#: (forward and backward-weights), and torch.nn's own oneDNN RNN kernels
PRODUCT_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "mkl::_mkl_linear",
               "mkldnn::_linear_pointwise", "aten::mkldnn_linear_backward_weights",
               "aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward")
#: copies into oneDNN's layouts that the products need (dense to oneDNN tensors, packed weights)
LAYOUT_OPS = ("aten::to_mkldnn", "mkldnn::_reorder_linear_weight")


def add_common_args(parser: argparse.ArgumentParser, *, repeats: int = 5, threads: bool = True,
                    shapes: bool = True) -> None:
    """The layer benchmarks' common flags: --quick, --repeats, and where the script takes them,
    --threads (torch.set_num_threads) and --shapes (one of SHAPES, or both)."""
    parser.add_argument("--quick", action="store_true", help="small shape, 2 repeats")
    parser.add_argument("--repeats", type=int, default=repeats)
    if threads:
        parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    if shapes:
        parser.add_argument("--shapes", choices=["both", *SHAPES], default="both")


def chosen_shapes(args: argparse.Namespace) -> tuple[dict[str, tuple[int, int, int, int]], int]:
    """(the shapes, the repeats) that ``add_common_args``'s flags ask for; sets torch's thread
    count first where --threads was given. --quick: the small shape, 2 repeats."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if args.quick:
        return {"small": SHAPES["small"]}, 2
    shape = getattr(args, "shapes", "both")
    return (SHAPES if shape == "both" else {shape: SHAPES[shape]}), args.repeats


def checked_cases(shapes: dict, build: Callable, check: Callable) -> Iterator[tuple]:
    """For each shape: (name, (T, B, I, H), ``build(I, H)``'s models, a seeded float32 input
    x (T, B, I)), once ``check(models, x)`` has passed: correctness before any timing."""
    for name, (T, B, I, H) in shapes.items():
        models = build(I, H)
        torch.manual_seed(1)
        x = torch.randn(T, B, I)
        check(models, x)
        yield name, (T, B, I, H), models, x


def time_layers(
    models: dict[str, torch.nn.Module],
    x: torch.Tensor,
    repeats: int,
    context: Callable[[str], contextlib.AbstractContextManager] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Seconds of each call: ``{name: {"fwd": [...], "fwd+bwd": [...]}}``, one warm-up first.

    ``context(name)``, if given, is entered around each call of that model (the graph and its
    buffers are freed inside the call, so inside the context too).
    """
    xg = x.clone().requires_grad_(True)

    def forward(m):
        with torch.no_grad():
            m(x)

    def forward_backward(m):
        out, _ = m(xg)
        out.sum().backward()

    ctx = context or (lambda name: contextlib.nullcontext())
    times = {name: {"fwd": [], "fwd+bwd": []} for name in models}
    for kind, fn in (("fwd", forward), ("fwd+bwd", forward_backward)):
        for name, m in models.items():
            with ctx(name):
                fn(m)  # warm-up
        for _ in range(repeats):
            for name, m in models.items():
                with ctx(name):
                    t0 = time.perf_counter()
                    fn(m)
                    times[name][kind].append(time.perf_counter() - t0)
    return times


def profile_split(m: torch.nn.Module, x: torch.Tensor, context=contextlib.nullcontext
                  ) -> tuple[float, float, float]:
    """(seconds in matrix products, in copies into oneDNN's layouts, in all) of one
    forward+backward after a warm-up, under ``context()``. torch.nn's own LSTM/GRU kernels
    (oneDNN's RNN primitive) count as products whole: their elementwise work is inside the
    primitive."""
    from torch.profiler import ProfilerActivity, profile

    xg = x.clone().requires_grad_(True)
    with context():
        m(xg)[0].sum().backward()  # warm-up: buffers in the pool, weights packed once
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            m(xg)[0].sum().backward()
            total = time.perf_counter() - start
    events = prof.key_averages()
    products = sum(e.self_cpu_time_total for e in events if e.key in PRODUCT_OPS)
    layouts = sum(e.self_cpu_time_total for e in events if e.key in LAYOUT_OPS)
    return products / 1e6, layouts / 1e6, total


def profile_rows(models: dict, x: torch.Tensor, names, context) -> str:
    """A Markdown table: one forward+backward of each named model, products against the rest."""
    lines = ["\nwhere one forward+backward's time goes (torch.profiler; the split, not the total, "
             "is the point: the profiler slows each op a little)\n",
             "| model | total ms | matrix products ms | layout copies ms | the rest ms | "
             "products' share |", "|---|---:|---:|---:|---:|---:|"]
    for name in names:
        products, layouts, total = profile_split(models[name], x, lambda n=name: context(n))
        lines.append(f"| {name} | {total * 1e3:.1f} | {products * 1e3:.1f} | "
                     f"{layouts * 1e3:.1f} | {(total - products - layouts) * 1e3:.1f} | "
                     f"{products / total:.0%} |")
    return "\n".join(lines)


def onednn_gflops(M: int, K: int, N: int, repeats: int) -> float:
    """GFLOP/s of oneDNN's inner product (M, K) x (K, N) with the weight packed once (what torch's
    LSTM kernel and rnnkit's fast path run; torch.mm runs MKL, which takes its AVX2 code on AMD
    CPUs), best of ``repeats`` after a warm-up."""
    if not torch.backends.mkldnn.is_available():
        return float("nan")
    from matmul_rate import best_seconds

    x, w = torch.randn(M, K), torch.randn(N, K)
    packed = torch.ops.mkldnn._reorder_linear_weight(w, M)

    def product():
        return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")

    torch.testing.assert_close(product(), x @ w.t(), rtol=1e-3, atol=1e-3)
    return 2.0 * M * K * N / best_seconds(product, repeats) / 1e9
