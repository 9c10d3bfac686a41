"""``rnnkit sample`` and ``rnnkit eval``, and the functions behind them, against direct computations."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from lm_helpers import TINY

from rnnkit.cli import main
from rnnkit.data.text import split_text
from rnnkit.train import evaluate_run, load_model
from rnnkit.train.engines import eval_layout, evaluate_model
from rnnkit.train.sampling import filter_probs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, corpus_text):
    """One trained run shared by this module's tests (they only read it)."""
    root = tmp_path_factory.mktemp("sample")
    data = root / "corpus.txt"
    data.write_text(corpus_text, encoding="utf-8")
    torch.set_num_threads(1)
    assert main(["train", "--data", str(data), "--out", str(root / "run"), *TINY,
                 "--max-iters", "30", "--lr", "0.01", "--warmup-iters", "5"]) == 0
    return root / "run"


def greedy_oracle(model, vocab, prompt: str, n: int) -> str:
    """Greedy decoding that re-reads the whole text every step: no state carried at all."""
    text = prompt
    for _ in range(n):
        ids = torch.from_numpy(vocab.encode(text)).view(-1, 1)
        logits, _ = model(ids)
        text += vocab.chars[int(logits[-1, 0].argmax())]
    return text


def test_greedy_sample_equals_full_recomputation(run_dir, capsys):
    model, vocab, _ = load_model(run_dir)
    capsys.readouterr()
    assert main(["sample", str(run_dir), "--prompt", "The ", "--length", "25",
                 "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert out == greedy_oracle(model, vocab, "The ", 25) + "\n"
    # top-k 1 is greedy too, whatever the temperature
    assert main(["sample", str(run_dir), "--prompt", "The ", "--length", "25", "--top-k", "1"]) == 0
    assert capsys.readouterr().out == out


def test_seeded_sampling_repeats_and_top_k_is_capped(run_dir, capsys):
    argv = ["sample", str(run_dir), "--length", "40", "--seed", "7", "--top-k", "100000",
            "--top-p", "0.95", "--temperature", "0.9"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    assert capsys.readouterr().out == first and len(first) == 1 + 40 + 1  # "\n" prompt + 40 + "\n"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--temperature", "-0.5"], "--temperature must lie in [0, inf), got -0.5"),
        (["--top-k", "0"], "--top-k must be greater than zero, got 0"),
        (["--top-p", "0"], "--top-p must lie in (0, 1], got 0.0"),
        (["--top-p", "1.5"], "--top-p must lie in (0, 1], got 1.5"),
        (["--length", "-1"], "--length must be at least 0, got -1"),
        (["--prompt", "the ü ✓"], "the prompt has 2 character(s) outside the vocabulary"),
    ],
)
def test_bad_sampling_options(run_dir, capsys, flags, message):
    code = main(["sample", str(run_dir), *flags])
    captured = capsys.readouterr()
    assert code == 2 and message in captured.err and "Traceback" not in captured.err
    assert captured.out == ""  # nothing printed before the refusal


def test_filter_probs_known_answers():
    logits = torch.log(torch.tensor([0.5, 0.2, 0.2, 0.1]))
    torch.testing.assert_close(filter_probs(logits, 1.0), torch.tensor([0.5, 0.2, 0.2, 0.1],
                                                                       dtype=torch.float64))
    torch.testing.assert_close(filter_probs(logits, 1.0, top_k=1),
                               torch.tensor([1.0, 0, 0, 0], dtype=torch.float64))
    # nucleus 0.6: 0.5 is not enough, 0.5 + 0.2 is; one of the tied 0.2s stays
    p = filter_probs(logits, 1.0, top_p=0.6)
    assert (p > 0).sum() == 2 and p[0] == pytest.approx(0.5 / 0.7)
    # nucleus 0.5 exactly: the first alone holds it
    torch.testing.assert_close(filter_probs(logits, 1.0, top_p=0.5),
                               torch.tensor([1.0, 0, 0, 0], dtype=torch.float64))
    # temperature 0.5 squares the odds: p ∝ p0^2
    expected = torch.tensor([0.25, 0.04, 0.04, 0.01], dtype=torch.float64)
    torch.testing.assert_close(filter_probs(logits, 0.5), expected / expected.sum())


def test_eval_is_the_sum_over_independent_streams(run_dir, corpus_text):
    """The stateful evaluation equals scoring each stream as one long sequence from a zero state."""
    model, vocab, cfg = load_model(run_dir)
    ids = vocab.encode(split_text(corpus_text, cfg.val_fraction)[1])
    total, count = evaluate_model(model, ids, torch.device("cpu"))
    B, _ = eval_layout(len(ids))
    length = (len(ids) - 1) // B
    expected, n = 0.0, 0
    for b in range(B):
        seq = torch.from_numpy(ids[b * length : (b + 1) * length + 1])
        logits, _ = model(seq[:-1].view(-1, 1))
        expected -= torch.log_softmax(logits[:, 0].double(), -1).gather(1, seq[1:, None]).sum().item()
        n += length
    assert count == n == B * length
    assert total == pytest.approx(expected, rel=1e-5)


def test_eval_command_prints_nats_and_bits(run_dir, corpus, capsys):
    assert main(["eval", str(run_dir)]) == 0
    line = capsys.readouterr().out
    nats, bits = map(float, re.findall(r"([\d.]+) (?:nats|bits)/char", line))
    assert bits == pytest.approx(nats / math.log(2), abs=1e-4)
    assert nats == pytest.approx(evaluate_run(run_dir).loss, abs=1e-4)
    assert main(["eval", str(run_dir), "--data", str(corpus), "--split", "train"]) == 0
    assert "train loss" in capsys.readouterr().out


def test_eval_on_other_text_names_unknown_characters(run_dir, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text("plain text, " * 10 + "then ✓ and ☃", encoding="utf-8")  # both in the last 10%
    assert main(["eval", str(run_dir), "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert "outside the vocabulary" in err and "'☃'" in err and "'✓'" in err


def test_trained_model_beats_uniform(run_dir):
    """30 steps at lr 0.01 learn something: better than the uniform distribution's log V."""
    res = evaluate_run(run_dir)
    _, vocab, _ = load_model(run_dir)
    assert res.loss < math.log(len(vocab)) - 0.5
    assert np.isfinite(res.bpc)


class Clock:
    """time.perf_counter for rnnkit.train.progress that moves on 2 s at every call."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 2.0
        return self.now


def test_eval_and_long_samples_report_progress_when_slow(run_dir, corpus_text, tmp_path, capsys,
                                                        monkeypatch):
    """No silence over about 5 s: with every call 2 s apart, a line appears every third one."""
    from rnnkit.train import progress

    monkeypatch.setattr(progress.time, "perf_counter", Clock())
    assert main(["sample", str(run_dir), "--length", "12", "--seed", "0"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines and all(line.startswith("sampling: ") for line in lines)
    assert "/12 chars" in lines[0] and "left" in lines[0]
    assert len(captured.out) == 1 + 12 + 1  # the text itself is untouched: prompt, 12, newline

    longer = tmp_path / "longer.txt"  # 4 evaluation windows of 64 streams x 256 characters
    longer.write_text(corpus_text * 10, encoding="utf-8")
    assert main(["eval", str(run_dir), "--data", str(longer), "--split", "all"]) == 0
    captured = capsys.readouterr()
    assert "scoring the whole text: " in captured.err and "all loss" in captured.out


def test_progress_counts_every_prediction(run_dir, corpus_text):
    from rnnkit.train.engines import eval_predictions
    from rnnkit.train.progress import WorkProgress

    model, vocab, cfg = load_model(run_dir)
    ids = vocab.encode(split_text(corpus_text, cfg.val_fraction)[1])
    progress = WorkProgress(eval_predictions(len(ids)), "x", enabled=False)
    _, count = evaluate_model(model, ids, torch.device("cpu"), progress)
    assert progress.done == count == progress.total


def test_progress_is_a_bar_on_a_terminal_and_quiet_when_quick():
    import io

    from rnnkit.train.progress import WorkProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    with WorkProgress(100, "scoring", stream=stream) as bar:
        for _ in range(10):
            bar.update(10)
    assert "scoring" in stream.getvalue() and "\r" in stream.getvalue()
    log = io.StringIO()
    with WorkProgress(100, "scoring", stream=log) as quick:  # real clock: well under 5 s
        quick.update(100)
    assert log.getvalue() == ""
