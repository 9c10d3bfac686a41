"""Fixtures for every test.

One torch thread for the tests of the applications (tests/tasks, train, data, models, viz, and the
command line's): their models are tiny, and on a busy machine a second thread only adds contention
(and one thread makes the numbers reproducible). Restored afterwards so the other tests (the layers'
parity and speed-path tests) see the usual setting. No test may leave an execution choice
(``rnnkit.options``) changed behind it. ``corpus_text`` and ``corpus``: a small text for the
character-LM tests (``lm_helpers.TINY`` holds their tiny training flags).
"""

import sys
from pathlib import Path

import pytest
import torch

from rnnkit.data.corpora import python_docs_text

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # lm_helpers, for the tests in every folder below
    sys.path.insert(0, HERE)

ONE_THREAD_DIRS = {"tasks", "viz", "train", "data", "models", "cli"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread_for_small_models(request):
    if request.path.parent.name not in ONE_THREAD_DIRS:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _options_left_as_found():
    """No test leaves an execution choice changed for the tests after it (they use scoped
    ``rnnkit.options`` blocks; the deprecated process-wide switches are gone)."""
    from rnnkit.options import current

    before = current()
    yield
    assert current() == before, f"the test left rnnkit.options at {current()}, not {before}"


@pytest.fixture(scope="session")
def corpus_text() -> str:
    return python_docs_text()[:6000]


@pytest.fixture
def corpus(tmp_path, corpus_text):
    path = tmp_path / "corpus.txt"
    path.write_text(corpus_text, encoding="utf-8")
    return path
