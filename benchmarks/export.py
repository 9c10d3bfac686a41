"""Exported rnnkit models in onnxruntime against eager torch, and int8 against float32.

    python benchmarks/export.py            # full table, writes docs/export.md (~10 min on 2 cores)
    python benchmarks/export.py --quick    # fewer repeats, no T=1024, a shorter char-LM run
    python benchmarks/export.py --run RUN  # int8 on an existing char-LM run folder

1. Per sequence: one sequence (B=1, I=H=256) of T = 64, 256, 1024 steps through LSTM, GRU and
   LayerNormLSTM: the eager layer (rnnkit's default path) against its ONNX file in onnxruntime.
2. Per streaming step: ``layer.step(x_t, state)`` in eager torch against the ``--streaming``
   graph, one step per call at B=1 (what a real-time caller does).
3. int8: a char LM trained on tinyshakespeare (or ``--run``), exported, quantized by onnxruntime's
   dynamic quantizer: file size, characters per second (the validation pass at B=16; generation
   steps at B=1) and the validation loss in nats per character, against float32.

Correctness first: every ONNX file is checked against eager (max error <= 1e-5 of the output's
scale) before anything is timed. Calls alternate between the two runtimes so drift in the
machine's speed hits both alike; the table shows medians. torch and onnxruntime get the same
number of threads (``--threads``, default 1). The table goes into docs/export.md between
``<!-- begin: benchmarks/export.py -->`` and ``<!-- end: benchmarks/export.py -->``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from doc_section import cpu_model, fill_section

import rnnkit
from rnnkit.export import quantize_int8, to_onnx

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "export.md"
LAYERS = {"LSTM": rnnkit.LSTM, "GRU": rnnkit.GRU, "LayerNormLSTM": rnnkit.LayerNormLSTM}
SIZE = 256


def session(path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the optional inputs' defaults are meant: no warning
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def close(got, ref, what: str) -> None:
    for g, r in zip(got, ref):
        r = r.detach().numpy()
        err, scale = np.abs(g - r).max(), np.abs(r).max()
        if err > 1e-5 * max(scale, 1e-6):
            raise SystemExit(f"{what}: onnxruntime differs from eager by {err:.3g} (scale {scale:.3g})")


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, one warm-up each, calls alternating."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_layer(name: str, folder: Path, lengths, repeats: int, threads: int) -> list[dict]:
    torch.manual_seed(0)
    layer = LAYERS[name](SIZE, SIZE).eval()
    seq = session(to_onnx(layer, folder / f"{name}.onnx"), threads)
    step = session(to_onnx(layer, folder / f"{name}-step.onnx", streaming=True), threads)
    n_state = 2 if layer.mode == "LSTM" else 1
    x = torch.randn(9, 2, SIZE)  # correctness first: a length and batch not traced
    with torch.no_grad():
        out, state = layer(x)
        ref = (out, *(state if n_state == 2 else (state,)))
        close(seq.run(None, {"input": x.numpy()}), ref, f"{name} sequence")
        y_t, s_t = layer.step(x[0])
        ref_t = (y_t, *(s_t if n_state == 2 else (s_t,)))
        close(step.run(None, {"x_t": x[0].numpy()}), ref_t, f"{name} step")
    rows = []
    for T in lengths:
        x = torch.randn(T, 1, SIZE)
        feeds = {"input": x.numpy()}
        with torch.no_grad():
            t = interleaved({"eager": lambda x=x: layer(x),
                             "ort": lambda f=feeds: seq.run(None, f)}, repeats)
        rows.append({"layer": name, "what": f"sequence T={T}", **t})
    rows.append({"layer": name, "what": "streaming step", **time_steps(layer, step, n_state)})
    return rows


def time_steps(layer, sess, n_state: int, steps: int = 400) -> dict[str, float]:
    """Seconds per step, stepping ``steps`` times with the state carried (B=1)."""
    xs = torch.randn(steps, 1, SIZE)
    names = ("h0", "c0")[:n_state]

    def eager():
        state = None
        with torch.no_grad():
            for x_t in xs:
                _, state = layer.step(x_t, state)

    def onnx():
        feeds = {}
        for x_t in xs.numpy():
            _, *state = sess.run(None, {"x_t": x_t, **feeds})
            feeds = dict(zip(names, state))

    t = interleaved({"eager": eager, "ort": onnx}, 5)
    return {k: v / steps for k, v in t.items()}


def char_lm_run(folder: Path, args) -> Path:
    """A char LM on tinyshakespeare, trained briefly, or the given run folder."""
    if args.run:
        return Path(args.run)
    from rnnkit.train import TrainConfig, train

    data = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
    cfg = TrainConfig(data=str(data) if data.is_file() else "tinyshakespeare",
                      out=str(folder / "charlm"), hidden_size=256, num_layers=1, embed_size=32,
                      max_iters=150 if args.quick else 600, eval_every=10**6, eval_chars=2000,
                      sample_length=0, log_every=100, seed=0)
    print(f"training a char LM ({cfg.max_iters} steps, hidden {cfg.hidden_size}) for the int8 "
          "comparison", file=sys.stderr)
    return train(cfg).run_dir


def onnx_loss(sess, ids: np.ndarray) -> tuple[float, float]:
    """(nats per character, characters per second): rnnkit eval's stateful pass, in onnxruntime."""
    from rnnkit.data.streams import Streams
    from rnnkit.train.engines import eval_layout

    B, T = eval_layout(len(ids))
    total, count, feeds = 0.0, 0, {}
    t0 = time.perf_counter()
    for batch in Streams(ids, B, T, shift=False).one_pass():
        logits, *state = sess.run(None, {"x": batch.x, **feeds})
        feeds = dict(zip(("h0", "c0"), state))
        z = logits - logits.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        total -= np.take_along_axis(logp, batch.y[..., None], -1).sum()
        count += batch.y.size
    return total / count, count / (time.perf_counter() - t0)


def bench_int8(folder: Path, args) -> list[dict]:
    from rnnkit.data.corpora import load_corpus
    from rnnkit.data.text import split_text
    from rnnkit.export.runs import export_run
    from rnnkit.train import load_model
    from rnnkit.train.engines import evaluate_model

    run = char_lm_run(folder, args)
    model, vocab, cfg = load_model(run)
    fp32 = export_run(run, "onnx", folder / "charlm.onnx")
    int8 = quantize_int8(fp32, folder / "charlm-int8.onnx")
    step32 = export_run(run, "onnx", folder / "charlm-step.onnx", streaming=True)
    step8 = quantize_int8(step32, folder / "charlm-step-int8.onnx")
    val = split_text(load_corpus(cfg.data).text, cfg.val_fraction)[1]
    ids = vocab.encode(val[: 20000 if args.quick else len(val)])
    t0 = time.perf_counter()
    total, count = evaluate_model(model, ids, torch.device("cpu"))
    eager = {"loss": total / count, "chars/s": count / (time.perf_counter() - t0)}
    rows = [{"model": "eager torch float32", "MB": None, **eager, "steps/s": None}]
    for label, path, step in (("onnxruntime float32", fp32, step32), ("onnxruntime int8", int8, step8)):
        loss, rate = onnx_loss(session(path, args.threads), ids)
        sess = session(step, args.threads)
        t = time_steps_lm(sess, len(vocab))
        rows.append({"model": label, "MB": path.stat().st_size / 2**20, "loss": loss,
                     "chars/s": rate, "steps/s": 1.0 / t})
    rows[0]["steps/s"] = 1.0 / time_eager_lm(model, len(vocab))
    return rows


def time_steps_lm(sess, V: int, steps: int = 400) -> float:
    ids = np.random.default_rng(0).integers(0, V, steps)
    optional = {i.name for i in sess.get_overridable_initializers()}
    names = [n for n in ("h0", "c0") if n in optional]  # the outputs' order: h_n, c_n

    def run():
        feeds = {}
        for i in ids:
            _, *state = sess.run(None, {"x_t": np.array([i]), **feeds})
            feeds = dict(zip(names, state))

    return interleaved({"ort": run}, 3)["ort"] / steps


def time_eager_lm(model, V: int, steps: int = 400) -> float:
    ids = torch.randint(0, V, (steps, 1, 1))

    def run():
        state = None
        with torch.no_grad():
            for x in ids:
                _, state = model(x, state)

    return interleaved({"eager": run}, 3)["eager"] / steps


def table(layer_rows: list[dict], lm_rows: list[dict], args, command: str, load: str) -> str:
    lines = [
        f"Command: `{command}`  ",
        f"Date: {datetime.date.today().isoformat()}; CPU: {cpu_model()} ({os.cpu_count()} cores, "
        f"load average {load} at the start); threads: {args.threads} (torch and onnxruntime); "
        f"torch {torch.__version__}, onnxruntime {ort.__version__}",
        "",
        f"Layers (I = H = {SIZE}, B = 1). Median time per call; speed-up = eager / onnxruntime.",
        "",
        "| layer | call | eager torch | onnxruntime | speed-up |",
        "|---|---|---:|---:|---:|",
    ]
    for r in layer_rows:
        lines.append(f"| {r['layer']} | {r['what']} | {fmt_time(r['eager'])} | "
                     f"{fmt_time(r['ort'])} | {r['eager'] / r['ort']:.2f}x |")
    base = lm_rows[0]["loss"]
    lines += [
        "",
        "Char LM, int8 against float32: validation loss in nats per character (stateful pass "
        "as `rnnkit eval`; change against eager float32), characters per second in that pass, "
        "generation steps per second (B = 1: the streaming graph for onnxruntime, "
        "`model(x, state)` for eager).",
        "",
        "| model | file (MB) | val loss | change | chars/s | steps/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in lm_rows:
        size = "" if r["MB"] is None else f"{r['MB']:.2f}"
        lines.append(f"| {r['model']} | {size} | {r['loss']:.4f} | {r['loss'] - base:+.5f} | "
                     f"{r['chars/s']:,.0f} | {r['steps/s']:,.0f} |")
    return "\n".join(lines) + "\n"


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.0f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no T=1024")
    parser.add_argument("--threads", type=int, default=1, help="threads for torch and onnxruntime")
    parser.add_argument("--run", default=None, help="an existing char-LM run folder for int8")
    parser.add_argument("--no-doc", action="store_true", help="print the table only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "unknown"
    lengths = (64, 256) if args.quick else (64, 256, 1024)
    repeats = 3 if args.quick else 7
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        layer_rows = []
        for name in LAYERS:
            print(f"{name}: checking, then timing", file=sys.stderr, flush=True)
            layer_rows += bench_layer(name, folder, lengths, repeats, args.threads)
        print("char LM: int8 against float32", file=sys.stderr, flush=True)
        lm_rows = bench_int8(folder, args)
    command = "python benchmarks/export.py " + " ".join(sys.argv[1:])
    text = table(layer_rows, lm_rows, args, command.strip(), load)
    print(text)
    if not args.no_doc:
        fill_section(DOC, __file__, text)
        print(f"wrote the table into {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()
