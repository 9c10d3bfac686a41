"""Speed of ``rnnkit.viz.trace`` on 10,000 characters through the shakespeare preset's model (LSTM
1x512, embedding 32), against the layer's own forward over the same text, and of the page on it.

    .venv/bin/python benchmarks/trace.py                       # writes its table into docs/explore.md
    .venv/bin/python benchmarks/trace.py --run runs/shakespeare --chars 10000 --repeats 5

The model is the trained run when ``--run`` names one (default ``runs/shakespeare`` if present),
else the same architecture with random weights (the time does not depend on the weights). The
text is tinyshakespeare's validation split from ``../shared/data`` when present, else characters
drawn from the vocabulary.

Correctness first: trace's h_t and its last c_t equal the layer's forward output and c_n, its
logits equal the model's forward, and its fast path equals the reference loop on a prefix, or the
script stops before timing. Then each row runs ``--repeats`` times, interleaved, after one warm-up;
the table gives medians. Rows: the peer (``model.rnn`` on the embedded text, under no_grad: the
layer's own forward), ``trace()`` (default path: torch.nn's kernel for h, then all gates in one
matrix product), ``trace(reference)`` (the per-step Python loop), and ``make_bundle`` (what the
page is sent: quantised activations, predictions, feature scan, saturation). With headless
Chromium and Selenium installed, the page's own timings follow: load, recolour, hover, search.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from doc_section import cpu_model, fill_section

from rnnkit.data.vocab import Vocab
from rnnkit.explore.bundle import make_bundle
from rnnkit.explore.server import write_html
from rnnkit.models.charlm import CharLM
from rnnkit.train.config import PRESETS
from rnnkit.viz.trace import trace, trace_layer

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "explore.md"
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def load(args) -> tuple[CharLM, Vocab, str, str]:
    """(model, vocab, text, what the model is)."""
    run = Path(args.run) if args.run else ROOT / "runs" / "shakespeare"
    if (run / "config.json").is_file():
        from rnnkit.train import load_model

        model, vocab, _ = load_model(run)
        what = f"trained run {run.name}"
    else:
        p = PRESETS["shakespeare"]
        source = SHAKESPEARE.read_text(encoding="utf-8") if SHAKESPEARE.is_file() else None
        vocab = Vocab.from_text(source) if source else Vocab(tuple(chr(32 + i) for i in range(65)))
        torch.manual_seed(0)
        model = CharLM(len(vocab), cell=p["cell"], hidden_size=p["hidden_size"],
                       num_layers=p["num_layers"], embed_size=p["embed_size"]).eval()
        what = "shakespeare preset architecture, random weights"
    if SHAKESPEARE.is_file():
        full = SHAKESPEARE.read_text(encoding="utf-8")
        text = full[int(len(full) * 0.9):][: args.chars]
    else:
        g = torch.Generator().manual_seed(0)
        text = "".join(vocab.chars[i] for i in torch.randint(len(vocab), (args.chars,), generator=g))
    return model.eval(), vocab, text, what


@torch.no_grad()
def embedded(model, vocab, text) -> torch.Tensor:
    """The layer's input (T, E): the embedding, or one-hot with embed_size 0."""
    ids = torch.from_numpy(vocab.encode(text))
    if model.embed is not None:
        return model.embed(ids)
    return torch.nn.functional.one_hot(ids, model.vocab_size).to(model.head.weight.dtype)


@torch.no_grad()
def check(model, vocab, text) -> None:
    """Stop unless trace agrees with the layer's own forward and with its reference loop."""
    ids = torch.from_numpy(vocab.encode(text))
    tr = trace(model, text, vocab)
    x = embedded(model, vocab, text)
    out, (h_n, c_n) = model.rnn(x[:, None])
    logits, _ = model(ids[:, None])
    torch.testing.assert_close(tr["h"][0, 0], out[:, 0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(tr["c"][0, 0, -1], c_n[0, 0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(tr.logits, logits[:, 0], rtol=1e-4, atol=1e-4)
    fast, _ = trace_layer(model.rnn, x[:500])
    ref, _ = trace_layer(model.rnn, x[:500], reference=True)
    for kind in fast:
        torch.testing.assert_close(fast[kind], ref[kind], rtol=1e-4, atol=1e-5)
    print("check: trace == the layer's forward (h, c_n, logits); fast path == reference loop")


def time_rows(model, vocab, text, repeats: int) -> dict[str, list[float]]:
    x = embedded(model, vocab, text)

    def peer():
        with torch.no_grad():
            model.rnn(x[:, None])

    tr = trace(model, text, vocab)
    rows = {
        "layer's own forward (peer)": peer,
        "trace()": lambda: trace(model, text, vocab),
        "trace(), reference loop": lambda: trace_layer(model.rnn, x, reference=True),
        "make_bundle (the page's data)": lambda: make_bundle(tr),
    }
    times = {name: [] for name in rows}
    for fn in rows.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in rows.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def page_timings(model, vocab, text) -> dict[str, float] | str:
    """Milliseconds the page takes in headless Chromium, or why it was not measured."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return "not measured: selenium is not installed"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser or not shutil.which("chromedriver"):
        return "not measured: chromium and chromedriver are not installed"
    with tempfile.TemporaryDirectory() as tmp:
        page = write_html(Path(tmp) / "page.html", make_bundle(trace(model, text, vocab)))
        opts = webdriver.ChromeOptions()
        opts.binary_location = browser
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--window-size=1400,1000"):
            opts.add_argument(arg)
        d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
        try:
            d.set_script_timeout(120)
            d.get(page.as_uri())
            while not d.execute_script("return document.body.dataset.loads"):
                time.sleep(0.05)
            out = {"open the page (parse, decode, draw)":
                   d.execute_script("return performance.getEntriesByName('rnnkit-ready')[0].startTime")}
            out["recolour the text by the next unit"] = statistics.median(d.execute_script(
                "const r = []; for (let k = 0; k < 5; k++) { const t0 = performance.now();"
                "document.getElementById('next').click(); document.getElementById('text').offsetHeight;"
                "r.push(performance.now() - t0); } return r;"))
            out["hover a character"] = d.execute_script(
                "const s = document.querySelector('#text span[data-i=\"5000\"]') || "
                "document.querySelector('#text span'); const t0 = performance.now();"
                "s.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));"
                "document.getElementById('tooltip').offsetHeight; return performance.now() - t0;")
            # 200 characters from the 1000th, or a fifth of a shorter text from its middle
            ms, k = d.execute_async_script(
                "const done = arguments[0], sp = document.querySelectorAll('#text span');"
                "const n = sp.length, k = Math.min(200, Math.max(1, Math.floor(n / 5)));"
                "const a = n >= 1200 ? 1000 : Math.floor((n - k) / 2);"
                "const r = document.createRange(); r.setStart(sp[a], 0); r.setEnd(sp[a + k - 1], 1);"
                "const sel = getSelection(); sel.removeAllRanges(); sel.addRange(r);"
                "const t0 = performance.now();"
                "document.getElementById('text').dispatchEvent(new MouseEvent('mouseup', {bubbles: true}));"
                "setTimeout(() => done([performance.now() - t0, k]), 0);")
            out[f"unit search, {k} characters selected"] = ms
        finally:
            d.quit()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default=None, help="a trained run (default runs/shakespeare if present)")
    ap.add_argument("--chars", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", default="1,2",
                    help="torch thread counts to time, comma-separated (default 1,2)")
    ap.add_argument("--no-doc", action="store_true", help="print the table only")
    args = ap.parse_args(argv)
    threads = [int(n) for n in args.threads.split(",")]
    model, vocab, text, what = load(args)
    check(model, vocab, text)
    medians = {}
    for n in threads:  # a script's own setting, one count after the other
        torch.set_num_threads(n)
        times = time_rows(model, vocab, text, args.repeats)
        medians[n] = {name: statistics.median(ts) for name, ts in times.items()}
    command = "python benchmarks/trace.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"`{command.strip()}`, {datetime.date.today().isoformat()}, {cpu_model()} "
        f"({os.cpu_count()} logical CPUs), torch {torch.__version__}. Model: {what} "
        f"(LSTM 1x512, embedding 32); text: {len(text):,} characters; median of {args.repeats} "
        "runs, seconds, and the ratio to the layer's own forward with the same threads.", "",
        "| step | " + " | ".join(f"{n} thread{'s' if n > 1 else ''} | ratio" for n in threads) + " |",
        "|---|" + "---:|---:|" * len(threads),
    ]
    for name in medians[threads[0]]:
        cells = []
        for n in threads:
            peer = medians[n]["layer's own forward (peer)"]
            cells += [f"{medians[n][name]:.3f}", f"{medians[n][name] / peer:.2f}x"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    page = page_timings(model, vocab, text)
    lines.append("")
    if isinstance(page, str):
        lines.append(f"The page in headless Chromium: {page}.")
    else:
        lines += ["| the page in headless Chromium (same text) | milliseconds |", "|---|---:|"]
        lines += [f"| {name} | {ms:.0f} |" for name, ms in page.items()]
    table = "\n".join(lines) + "\n"
    print(table)
    if not args.no_doc:
        fill_section(DOC, __file__, table)
        print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
