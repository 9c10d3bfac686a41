"""Opt-in quality checks (``pytest -m slow tests/train``): the documented recipes reach their numbers.

They measure wall-clock-limited training, so run them on an otherwise idle machine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rnnkit.cli import main

SHAKESPEARE = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare.txt"


def validation_loss(stdout: str) -> float:
    return float(re.search(r"validation loss ([\d.]+) nats/char", stdout).group(1))


@pytest.mark.slow
@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="needs ../shared/data/tinyshakespeare.txt")
def test_shakespeare_recipe_reaches_target(tmp_path, capsys):
    """The issue's bar: <= 1.55 nats/char within 230 s of wall time on a 2-core CPU."""
    assert main(["train", "--preset", "shakespeare", "--data", str(SHAKESPEARE),
                 "--out", str(tmp_path / "run")]) == 0
    assert validation_loss(capsys.readouterr().out) <= 1.55


@pytest.mark.slow
def test_default_run_learns_the_python_docs(tmp_path, capsys):
    """``rnnkit train`` with no arguments (here only --out): measured 1.1802 nats/char, ~3 min."""
    assert main(["train", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert validation_loss(out) <= 1.30 and "--- sample" in out
