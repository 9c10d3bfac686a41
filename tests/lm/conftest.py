"""Shared fixtures for the character-LM tests: a small corpus and a tiny, fast configuration."""

from __future__ import annotations

import pytest
import torch

from rnnkit.data.corpora import python_docs_text


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: tiny kernels gain nothing from two, and the result is reproducible."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def corpus_text() -> str:
    return python_docs_text()[:6000]


@pytest.fixture
def corpus(tmp_path, corpus_text):
    path = tmp_path / "corpus.txt"
    path.write_text(corpus_text, encoding="utf-8")
    return path
