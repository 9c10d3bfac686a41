"""Fixtures of the compiled loops' tests: ``compiled_kernels`` (tests/nn/conftest.py: the built
extension, or the test skips and says why) and ``on``, the kernels turned on for one test the way
a user turns them on."""

from __future__ import annotations

import pytest

import rnnkit


@pytest.fixture
def on(compiled_kernels):
    """The compiled kernels for one test: ``rnnkit.options(compiled=True)``."""
    with rnnkit.options(compiled=True):
        yield
