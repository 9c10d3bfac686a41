"""One ``step()`` without autograd (streaming, the char LM's sampler) against torch.nn's own call.

    python benchmarks/step.py                  # B=1, I=H=512, 300 steps, 5 interleaved repeats
    python benchmarks/step.py --batch 8 --hidden 256

Each row streams the same 300 inputs one step at a time under ``torch.no_grad``, carrying the
state, and reports microseconds per step (median over repeats; rounds interleaved). The peers:
``torch.nn.LSTM`` / ``torch.nn.GRU`` called on a one-step sequence ``(1, B, I)`` with the state
(what a user of torch.nn streams with), and ``torch.nn.LSTMCell`` for scale. rnnkit's rows:
``step()`` with the default options (the compiled kernel where it is built: nothing is kept for
a backward) and under ``rnnkit.options(compiled=False)`` (the stock LSTM then takes the readable
loop, the others their eager fast path). Target (issue 17): rnnkit.LSTM.step at B=1, H=512 at
most 1.0x torch.nn.LSTM's one-step call.

Correctness first: every streamed row's outputs equal its peer's (the stock and fused layers load
the peer's weights) or, for the layer-norm layers, their readable loop's over the whole sequence,
in float64, to 1e-10.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from doc_section import add_doc_flag, write_section
from torch import nn

import rnnkit
from rnnkit.nn.fast.compiled import CPUKernelsUnavailable, load

EAGER = " (compiled=False)"


def build(I: int, H: int) -> dict[str, tuple[nn.Module, str]]:
    """name -> (module, kind): ``torch`` (called on (1, B, I)), ``cell`` (LSTMCell), ``step``."""
    torch.manual_seed(0)
    lstm, gru = nn.LSTM(I, H), nn.GRU(I, H)
    cell = nn.LSTMCell(I, H)
    with torch.no_grad():
        for a, b in ((cell.weight_ih, lstm.weight_ih_l0), (cell.weight_hh, lstm.weight_hh_l0),
                     (cell.bias_ih, lstm.bias_ih_l0), (cell.bias_hh, lstm.bias_hh_l0)):
            a.copy_(b)
    models = {"torch.nn.LSTM": (lstm, "torch"), "torch.nn.LSTMCell": (cell, "cell")}
    for name, cls, ref in (("rnnkit.LSTM", rnnkit.LSTM, lstm),
                           ("rnnkit.FusedLSTM", rnnkit.FusedLSTM, lstm),
                           ("rnnkit.LayerNormLSTM", rnnkit.LayerNormLSTM, None),
                           ("torch.nn.GRU", None, None), ("rnnkit.GRU", rnnkit.GRU, gru),
                           ("rnnkit.LayerNormGRU", rnnkit.LayerNormGRU, None)):
        if cls is None:
            models[name] = (gru, "torch")
            continue
        m = cls(I, H)
        if ref is not None:
            m.load_state_dict(ref.state_dict())
        models[name] = (m, "step")
        models[name + EAGER] = (m, "step")
    return models


def peer(name: str) -> str:
    return "torch.nn.GRU" if "GRU" in name else "torch.nn.LSTM"


def context(name: str):
    return rnnkit.options(compiled=False) if name.endswith(EAGER) else contextlib.nullcontext()


def stream(m: nn.Module, kind: str, xs: torch.Tensor, gru: bool) -> torch.Tensor:
    """The outputs (T, B, H) of streaming xs (T, B, I) one step at a time, carrying the state."""
    ys, s = [], None
    for x_t in xs:
        if kind == "torch":
            y, s = m(x_t[None], s)
            y = y[0]
        elif kind == "cell":
            s = m(x_t, s)
            y = s[0]
        else:
            y, s = m.step(x_t, s)
        ys.append(y)
    return torch.stack(ys)


def check(models, I: int, H: int) -> None:
    """Float64: each step row against its peer's stream (same weights) or its readable loop."""
    xs = torch.randn(12, 2, I, dtype=torch.float64)
    for m, _ in models.values():
        m.double()
    with torch.no_grad():
        for name, (m, kind) in models.items():
            with context(name):
                got = stream(m, kind, xs, "GRU" in name)
            if "LayerNorm" in name:
                loop = type(m)(I, H, backend="loop", dtype=torch.float64)
                loop.load_state_dict(m.state_dict())
                want = loop(xs)[0]
            else:
                want = models[peer(name)][0](xs)[0]
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    for m, _ in models.values():
        m.float()


def measure(models, xs: torch.Tensor, repeats: int) -> dict[str, list[float]]:
    """Seconds per step of each row, one warm-up round first, rounds interleaved."""
    times = {name: [] for name in models}
    with torch.no_grad():
        for r in range(repeats + 1):
            for name, (m, kind) in models.items():
                with context(name):
                    start = time.perf_counter()
                    stream(m, kind, xs, "GRU" in name)
                    if r:
                        times[name].append((time.perf_counter() - start) / len(xs))
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--input", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    add_doc_flag(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    notes = []
    try:
        load()  # built on first use (minutes): before anything is timed
    except CPUKernelsUnavailable as e:
        notes.append(f"(the compiled kernels are unavailable; the default rows run eager: {e})")
    B, I, H = args.batch, args.input, args.hidden
    models = build(I, H)
    check(models, I, H)
    torch.manual_seed(1)
    xs = torch.randn(args.steps, B, I)
    med = {n: statistics.median(t) for n, t in measure(models, xs, args.repeats).items()}
    lines = [*notes, f"B={B}, I={I}, H={H}, float32, {args.steps} steps streamed, median of "
             f"{args.repeats}", "",
             "| row | µs per step | ratio | against |", "|---|---:|---:|---|"]
    for name, t in med.items():
        lines.append(f"| {name} | {t * 1e6:.0f} | {t / med[peer(name)]:.2f}x | {peer(name)} |")
    lines += ["", "correctness: every row's stream checked first (float64, 1e-10) against its "
              "torch.nn peer or its readable loop."]
    print("\n".join(lines))
    write_section(__file__, "\n".join(lines), threads=torch.get_num_threads(), argv=argv,
                  title="step(): one streamed step without autograd against torch.nn")


if __name__ == "__main__":
    main()
