"""Fixtures of the layer tests: the compiled kernels, and each fast-path test run both ways.

With the compiled loop on by default, a test that ties the fast path to its reference takes the
``eager_or_compiled`` fixture: it runs once under ``rnnkit.options(compiled=False)`` (the eager
kernels) and once under ``compiled=True`` (skipped, saying why, where the extension cannot be
built), the way users choose."""

from __future__ import annotations

import pytest

import rnnkit
from rnnkit.nn.fast.compiled import CPUKernelsUnavailable, load


@pytest.fixture(scope="session")
def compiled_kernels():
    """The compiled extension (built on first use), or the test is skipped with the reason."""
    try:
        return load()
    except CPUKernelsUnavailable as e:
        pytest.skip(f"compiled CPU kernels unavailable here: {e}")


@pytest.fixture(params=[False, True], ids=["eager", "compiled"])
def eager_or_compiled(request):
    """The test body runs under ``rnnkit.options(compiled=...)``; yields the choice."""
    if request.param:
        request.getfixturevalue("compiled_kernels")
    with rnnkit.options(compiled=request.param):
        yield request.param
