"""``rnnkit.options``: scoped, nested, per thread, checked. (What each choice does to the numbers is
tested where the choice acts: tests/nn/fast/.)"""

from __future__ import annotations

import threading

import pytest

import rnnkit
from rnnkit.options import Options, current


def test_scoped_and_nested():
    assert current() == Options()  # the defaults
    assert current().gemm == "auto" and current().workspace is True
    with rnnkit.options(compiled=False) as outer:
        assert not outer.compiled and current() is outer
        with rnnkit.options(gemm="torch"):
            assert not current().compiled and current().gemm == "torch"  # the outer choice stays
        assert current() is outer
    assert current() == Options()


def test_compiled_default_comes_from_the_environment_once():
    """``RNNKIT_COMPILED`` sets the default when rnnkit.options loads (on by default); a bad
    value is an error that names the variable. Each case in a fresh interpreter."""
    import subprocess
    import sys

    code = "from rnnkit.options import current; print(current().compiled)"
    for value, shown in ((None, "True"), ("0", "False"), ("off", "False"), ("1", "True"),
                         ("", "True")):
        env = {k: v for k, v in __import__("os").environ.items() if k != "RNNKIT_COMPILED"}
        if value is not None:
            env["RNNKIT_COMPILED"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == shown, (value, out)
    env["RNNKIT_COMPILED"] = "maybe"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0
    assert "RNNKIT_COMPILED must be 1 or 0" in bad.stderr and "'maybe'" in bad.stderr


def test_packed_gemm_is_a_deprecated_spelling_of_gemm():
    with pytest.warns(DeprecationWarning, match="gemm='torch'"):
        with rnnkit.options(packed_gemm=False) as o:
            assert o.gemm == "torch" and o.packed_gemm is False
    with pytest.warns(DeprecationWarning):
        with rnnkit.options(packed_gemm=True) as o:
            assert o.gemm == "auto" and o.packed_gemm is True


def test_restored_after_an_error():
    with pytest.raises(RuntimeError, match="inside"):
        with rnnkit.options(workspace=False):
            raise RuntimeError("inside")
    assert current().workspace is True


def test_a_thread_starts_from_the_defaults_and_keeps_its_own():
    seen = {}

    def work():
        seen["start"] = current().gemm
        with rnnkit.options(gemm="onednn"):
            seen["inside"] = current().gemm
            barrier.wait()  # the main thread looks now, while this thread's scope is open
            barrier.wait()

    barrier = threading.Barrier(2)
    with rnnkit.options(gemm="torch", compiled=False):
        t = threading.Thread(target=work)
        t.start()
        barrier.wait()
        main = current()
        barrier.wait()
        t.join()
    assert seen == {"start": "auto", "inside": "onednn"}
    assert main.compiled is False and main.gemm == "torch"


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
    with pytest.raises(ValueError, match="gemm must be one of 'auto', 'onednn', 'mkl_packed', "
                                         "'torch', got 'blas'"):
        with rnnkit.options(gemm="blas"):
            pass


def test_import_rnnkit_stays_light():
    """``rnnkit.options`` is there without the lazy names (the module needs no torch)."""
    import subprocess
    import sys

    code = ("import sys, rnnkit; rnnkit.options; "
            "assert 'torch' not in sys.modules, 'rnnkit.options imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)
