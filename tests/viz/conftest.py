"""One torch thread for these tests: the models are tiny, and on a busy machine a second thread
only adds contention. Restored afterwards so other tests see the usual setting."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
