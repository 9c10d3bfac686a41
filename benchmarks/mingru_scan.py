"""MinGRU's parallel scan against its own sequential loop, stepping, and torch.nn.GRU.

    python benchmarks/mingru_scan.py                 # T = 512, 1024, 4096; B=16, H=I=256
    python benchmarks/mingru_scan.py --quick         # T = 512 only, 2 repeats
    python benchmarks/mingru_scan.py --threads 1     # pin the thread count (shared machines)
    python benchmarks/mingru_scan.py --compile       # also MinGRU with compiled coefficients

Correctness first, on the benchmark's own weights and input: the scan's output must equal the
sequential loop's (float32, rtol 1e-4) and stay as close to the float64 result as the loop does,
and stepping one step at a time must give the same numbers. Then, interleaved:

* ``scan``        ``MinGRU.forward``: one projection for all steps, the blocked parallel scan
* ``sequential``  ``MinGRU.forward_sequential``: the same projection, then a Python loop over
                  time for the recurrence ``h_t = a_t h_{t-1} + b_t`` (autograd backward)
* ``stepping``    ``MinGRU.forward`` called with T = 1, carrying h_n: the paper's "sequential
                  mode", how a streaming model runs (forward only)
* ``nn.GRU``      ``torch.nn.GRU(I, H)``, PyTorch's fused kernels (a full GRU: h enters the gates)

Ratios are "time of the peer / time of the scan" (above 1: the scan is faster). The issue's target
is scan >= 10x faster than the sequential loop at T = 4096.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from doc_section import add_doc_flag, recorded

import rnnkit
from rnnkit.nn.mingru import compile_min_rnn

B, H = 16, 256


def check(model: rnnkit.MinGRU, x: torch.Tensor) -> None:
    with torch.no_grad():
        out, h_n = model(x)
        seq, h_seq = model.forward_sequential(x)
        torch.testing.assert_close(out, seq, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(h_n, h_seq, rtol=1e-4, atol=1e-6)
        m64 = rnnkit.MinGRU(model.input_size, model.hidden_size, dtype=torch.float64)
        m64.load_state_dict(model.state_dict())
        truth, _ = m64.forward_sequential(x[:512].double())
        err_scan = ((out[:512].double() - truth).abs() / truth.abs()).max().item()
        err_loop = ((seq[:512].double() - truth).abs() / truth.abs()).max().item()
        assert err_scan <= 4 * err_loop + 1e-6, (err_scan, err_loop)
        h, steps = None, []
        for t in range(32):
            y, h = model(x[t : t + 1], h)
            steps.append(y)
        torch.testing.assert_close(torch.cat(steps), out[:32], rtol=1e-5, atol=1e-6)


def stepping(model, x):
    h = None
    for t in range(x.shape[0]):
        _, h = model(x[t : t + 1], h)
    return h


def run(models: dict, x: torch.Tensor, repeats: int, backward: bool) -> dict[str, float]:
    xg = x.clone().requires_grad_(backward)
    fns = {}
    for name, m in models.items():
        if name == "stepping":
            if backward:
                continue
            fns[name] = lambda m=m: stepping(m, x)
        elif name == "sequential":
            fns[name] = lambda m=m: m.forward_sequential(xg)[0]
        else:
            fns[name] = lambda m=m: m(xg)[0]
    times = {name: [] for name in fns}
    for _ in range(repeats + 1):  # the first round warms up and is dropped
        for name, fn in fns.items():
            t0 = time.perf_counter()
            if backward:
                fn().sum().backward()
            else:
                with torch.no_grad():
                    fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t[1:]) for name, t in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T = 512 only, 2 repeats")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--compile", action="store_true", help="add compiled coefficients")
    add_doc_flag(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lengths = [512] if args.quick else [512, 1024, 4096]
    repeats = 2 if args.quick else args.repeats
    I = args.input_size
    torch.manual_seed(0)
    model = rnnkit.MinGRU(I, H)
    models = {"scan": model, "sequential": model, "stepping": model, "nn.GRU": torch.nn.GRU(I, H)}
    if args.compile:
        compiled = rnnkit.MinGRU(I, H)
        compiled.load_state_dict(model.state_dict())
        models["scan, compiled"] = compile_min_rnn(compiled)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU; "
          f"B={B}, H={H}, I={I}")
    for backward in (False, True):
        kind = "forward+backward" if backward else "forward (no grad)"
        names = [n for n in models if not (backward and n == "stepping")]
        print(f"\n**{kind}**, median of {repeats}, ms (ratio = peer / scan)\n")
        print("| T | " + " | ".join(names) + " |")
        print("|---:|" + "---:|" * len(names))
        for T in lengths:
            x = torch.randn(T, B, I)
            if not backward:
                check(model, x)
            t = run(models, x, repeats, backward)
            cells = [f"{t['scan'] * 1e3:.1f}"] + [
                f"{t[n] * 1e3:.1f} ({t[n] / t['scan']:.1f}x)" for n in names[1:]
            ]
            print(f"| {T} | " + " | ".join(cells) + " |", flush=True)
    print("\ncorrectness: scan = sequential loop = stepping, checked first at every T")


if __name__ == "__main__":
    with recorded(__file__, threads=torch.get_num_threads,
                  title="MinGRU: the parallel scan against its loop, stepping and torch.nn.GRU"):
        main()
