"""``rnnkit.options``: scoped, nested, per thread, checked. (What each choice does to the numbers is
tested where the choice acts: tests/nn/fast/.)"""

from __future__ import annotations

import threading

import pytest

import rnnkit
from rnnkit.options import Options, current


def test_scoped_and_nested():
    assert current() == Options()  # the defaults: today's behaviour
    assert current().compiled is False and current().packed_gemm and current().workspace is True
    with rnnkit.options(compiled=True) as outer:
        assert outer.compiled and current() is outer
        with rnnkit.options(packed_gemm=False):
            assert current().compiled and not current().packed_gemm  # the outer choice stays
        assert current() is outer
    assert current() == Options()


def test_restored_after_an_error():
    with pytest.raises(RuntimeError, match="inside"):
        with rnnkit.options(workspace=False):
            raise RuntimeError("inside")
    assert current().workspace is True


def test_a_thread_starts_from_the_defaults_and_keeps_its_own():
    seen = {}

    def work():
        seen["start"] = current().compiled
        with rnnkit.options(compiled=True):
            seen["inside"] = current().compiled
            barrier.wait()  # the main thread looks now, while this thread's scope is open
            barrier.wait()

    barrier = threading.Barrier(2)
    with rnnkit.options(packed_gemm=False):
        t = threading.Thread(target=work)
        t.start()
        barrier.wait()
        main = current()
        barrier.wait()
        t.join()
    assert seen == {"start": False, "inside": True}
    assert main.compiled is False and main.packed_gemm is False


def test_rejects_unknown_names_and_bad_values():
    with pytest.raises(TypeError, match="unexpected keyword argument 'compile'. Expected one of"):
        with rnnkit.options(compile=True):
            pass
    with pytest.raises(TypeError, match="compiled must be a bool, got int"):
        with rnnkit.options(compiled=1):
            pass
    with pytest.raises(TypeError, match="workspace must be a bool or a Workspace, got str"):
        with rnnkit.options(workspace="big"):
            pass


def test_import_rnnkit_stays_light():
    """``rnnkit.options`` is there without the lazy names (the module needs no torch)."""
    import subprocess
    import sys

    code = ("import sys, rnnkit; rnnkit.options; "
            "assert 'torch' not in sys.modules, 'rnnkit.options imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)
