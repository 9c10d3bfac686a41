"""One torch thread for the tests under tests/tasks and tests/viz: their models are tiny, and on
a busy machine a second thread only adds contention. Restored afterwards so the other tests (the
layers' parity and speed-path tests) see the usual setting."""

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
