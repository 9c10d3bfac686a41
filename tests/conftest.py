"""Fixtures for every test.

One torch thread for the tests under tests/tasks and tests/viz: their models are tiny, and on a
busy machine a second thread only adds contention. Restored afterwards so the other tests (the
layers' parity and speed-path tests) see the usual setting. And no test may leave an execution
choice (``rnnkit.options``) changed behind it."""

import pytest
import torch

ONE_THREAD_DIRS = {"tasks", "viz"}


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
