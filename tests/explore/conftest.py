"""A tiny trained char-LM run shared by the explorer's tests (a few seconds of training)."""

from __future__ import annotations

import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.corpora import python_docs_text


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these models are tiny, and the machine may be shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def corpus_text() -> str:
    # Python's help topics: quotes, brackets, short lines and words, for the feature scan
    return python_docs_text()[:12000]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, corpus_text):
    root = tmp_path_factory.mktemp("explore")
    data = root / "corpus.txt"
    data.write_text(corpus_text, encoding="utf-8")
    run = root / "run"
    torch.set_num_threads(1)
    assert main(["train", "--data", str(data), "--out", str(run), "--hidden-size", "12",
                 "--num-layers", "2", "--embed-size", "6", "--seq-len", "16", "--batch-size", "8",
                 "--max-iters", "60", "--max-time", "0", "--log-every", "30", "--sample-length", "0",
                 "--device", "cpu", "--seed", "0"]) == 0
    return str(run)
