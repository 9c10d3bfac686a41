"""Building the compiled CPU kernels: the name, the stamp that makes a cached load instant, the
one progress line, the fallback order, the failure remembered, and the layers' fallback to the
eager kernels with one warning where nothing can be built (in a fresh interpreter, as a fresh
clone would meet it). No test here builds anything: a stand-in replaces
``torch.utils.cpp_extension.load`` where a build would start."""

from __future__ import annotations

import contextvars
import os
import stat
import subprocess
import sys
import textwrap

import pytest
import torch

from rnnkit.nn.fast.compiled import build as build_mod
from rnnkit.nn.fast.compiled.build import (
    FAILED,
    SOURCES,
    STAMP,
    CPUKernelsUnavailable,
    build,
    extension_name,
)


def fake_ninja(folder):
    """A ``ninja`` on PATH that answers ``--version``, so the compiler check is reached."""
    path = folder / "ninja"
    path.write_text("#!/bin/sh\necho 1.11.1\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_name_holds_instruction_set_and_torch_version():
    name = extension_name("AVX2")
    assert name.startswith("rnnkit_cpu_kernels_avx2_torch") and name.isidentifier()
    assert torch.__version__.split("+")[0].replace(".", "_") in name


def test_unavailable_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))  # nothing cached
    monkeypatch.setenv("PATH", str(tmp_path))  # no ninja, no compiler
    with pytest.raises(CPUKernelsUnavailable, match=r"^ninja was not found \(pip install ninja\)$"):
        build()
    fake_ninja(tmp_path)
    monkeypatch.setenv("CXX", "no-such-compiler-rnnkit")
    with pytest.raises(CPUKernelsUnavailable, match=r"no C\+\+ compiler: 'no-such-compiler-rnnkit' was"):
        build()


def test_build_falls_back_to_lesser_instruction_sets(tmp_path, monkeypatch, capsys):
    """A compiler that cannot build the AVX-512 code gets AVX2 next, then portable code; if all
    fail, the error carries each attempt's reason, and never tries above what torch picked."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "one"))
    tried = []

    def fake_load(name, sources, extra_cflags, extra_ldflags, verbose):
        assert sources == [str(s) for s in SOURCES]  # one extension from every source
        tried.append(name)
        if "_default_" not in name:
            raise RuntimeError(f"error: compiler rejects {name}")
        return "module"

    assert build("AVX512", loader=fake_load) == "module"
    assert tried == [extension_name(c) for c in ("AVX512", "AVX2", "DEFAULT")]
    err = capsys.readouterr().err  # one line for the three attempts
    assert err.count("\n") == 1 and "AVX512... failed; AVX2... failed; DEFAULT... done" in err

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "two"))

    def failing(name, **kw):
        raise RuntimeError(f"noise\nerror: no luck with {name}\nmore noise")

    with pytest.raises(CPUKernelsUnavailable) as err:
        build("AVX2", loader=failing)
    assert f"the AVX2 build failed: error: no luck with {extension_name('AVX2')}" in str(err.value)
    assert "the DEFAULT build failed" in str(err.value)
    assert "AVX512" not in str(err.value)  # never above what torch picked
    assert "\n" not in str(err.value)  # one line, the first error of each log


def test_one_progress_line_and_a_stamped_build_loads_without_ninja(tmp_path, monkeypatch,
                                                                   capsys):
    """A build prints one line on stderr (started, then done and its time); a build whose stamp
    matches is imported directly, silently, without the loader; a changed source is rebuilt."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    name = extension_name("DEFAULT")
    builds = []

    def fake_load(name, **kw):
        builds.append(name)
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / f"{name}.so").write_bytes(b"")
        return "built"

    monkeypatch.setattr(build_mod, "_import", lambda name, path: f"imported {path.name}")
    assert build("DEFAULT", loader=fake_load) == "built"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "building the compiled CPU kernels for this CPU" in err
    assert err.rstrip().endswith(" s") and "done in" in err
    assert build("DEFAULT", loader=fake_load) == f"imported {name}.so"  # the stamp matches
    assert capsys.readouterr().err == "" and builds == [name]
    (tmp_path / name / STAMP).write_text("another source")  # as if lstm.cpp had changed
    assert build("DEFAULT", loader=fake_load) == "built" and len(builds) == 2


def test_a_failed_build_is_remembered(tmp_path, monkeypatch, capsys):
    """The next process does not spend another build on the same failure: it gets the same
    reason at once, and the message says how to try again."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    calls = []

    def failing(name, **kw):
        calls.append(name)
        raise RuntimeError("error: broken toolchain")

    with pytest.raises(CPUKernelsUnavailable, match="broken toolchain"):
        build("DEFAULT", loader=failing)
    assert "failed" in capsys.readouterr().err
    assert (tmp_path / extension_name("DEFAULT") / FAILED).exists()
    with pytest.raises(CPUKernelsUnavailable, match="broken toolchain.*delete that folder"):
        build("DEFAULT", loader=failing)
    assert len(calls) == 1 and capsys.readouterr().err == ""


SCRIPT = textwrap.dedent("""
    import warnings, torch, rnnkit
    warnings.simplefilter("always")  # the once is rnnkit's own, not the warnings filter's
    torch.manual_seed(0)
    x = torch.randn(6, 3, 4)
    outs = []
    for layer in (rnnkit.LayerNormLSTM(4, 5), rnnkit.FusedLSTM(4, 5)):
        for _ in range(2):
            outs.append(layer(x)[0])
        with rnnkit.options(compiled=False):
            eager = layer(x)[0]
        torch.testing.assert_close(outs[-1], eager, rtol=0, atol=0)
    print("ok", layer._path(x))
""")


def run_fresh(tmp_path, script=SCRIPT, **env):
    """``script`` in a fresh interpreter with an empty extension folder and ``env`` on top."""
    base = {k: v for k, v in os.environ.items() if k != "RNNKIT_COMPILED"}
    base |= {"TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"), **env}
    return subprocess.run([sys.executable, "-c", script], env=base, capture_output=True,
                          text=True, timeout=300)


STEP = textwrap.dedent("""
    import torch, rnnkit
    from rnnkit.nn.sequence import step_path
    m, x = rnnkit.LSTM(4, 5), torch.randn(3, 4)
    with torch.no_grad():
        y, s = m.step(x)
        torch.testing.assert_close(y, m(x[None])[0][0])
        print("ok", step_path(m, x))
""")


def test_a_stock_layers_step_never_starts_a_build(tmp_path):
    """One step of a layer whose forward is torch's own kernel (the char LM's sampler) is not
    worth a build of minutes: with no finished build it takes the readable loop, silently, and
    tries nothing (a compiler that is not there would have been warned about)."""
    done = run_fresh(tmp_path, STEP, CXX=str(tmp_path / "no-compiler-here"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok loop" and "Warning" not in done.stderr
    assert "building" not in done.stderr and not (tmp_path / "ext").exists()


@pytest.mark.parametrize("missing", ["compiler", "ninja"])
def test_fresh_clone_without_tools_runs_eager_and_says_why_once(tmp_path, missing):
    """A first LayerNormLSTM call where nothing can be built works (the eager kernels' numbers,
    bit for bit) and says why it is slow in one warning line, once for the whole process."""
    if missing == "compiler":
        env = {"CXX": str(tmp_path / "no-compiler-here")}
        reason = "no C++ compiler"
    else:
        env = {"PATH": str(tmp_path)}  # no ninja (and no compiler) on PATH
        reason = "ninja was not found (pip install ninja)"
    done = run_fresh(tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok fast"
    lines = [ln for ln in done.stderr.splitlines() if "CompiledUnavailableWarning" in ln]
    assert len(lines) == 1, done.stderr
    assert reason in lines[0] and "running the eager kernels instead" in lines[0]
    assert "building" not in done.stderr  # nothing was attempted beyond the tool check


def test_rnnkit_compiled_0_tries_nothing(tmp_path):
    done = run_fresh(tmp_path, RNNKIT_COMPILED="0", CXX=str(tmp_path / "no-compiler-here"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok fast" and "Warning" not in done.stderr
    assert not (tmp_path / "ext").exists()


def test_deprecated_enable_and_disable():
    """``cpu_kernels.enable()`` / ``disable()`` warn and set the choice for the calling context
    (run here in a copy of the test's context, so the choice ends with the test)."""
    import rnnkit.nn.cpu_kernels as cpu_kernels

    try:
        cpu_kernels.load()
    except CPUKernelsUnavailable as e:
        pytest.skip(f"compiled CPU kernels unavailable here: {e}")
    from rnnkit.options import current

    before = current().compiled

    def body():
        with pytest.warns(DeprecationWarning, match=r"rnnkit.options\(compiled=True\)"):
            cpu_kernels.enable()
        assert current().compiled is True and cpu_kernels.available()
        with pytest.warns(DeprecationWarning, match=r"rnnkit.options\(compiled=False\)"):
            cpu_kernels.disable()
        assert current().compiled is False

    contextvars.copy_context().run(body)
    assert current().compiled is before  # the test's own context never changed


def test_the_package_carries_every_source():
    """Every .cpp and .h the build reads (the sources and what they include) matches a
    package-data pattern, so a wheel can build the kernels on first use."""
    import fnmatch
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = Path(__file__).resolve().parents[4]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["rnnkit"]
    package = root / "src" / "rnnkit"
    folder = SOURCES[0].parent
    files = sorted([*folder.glob("*.cpp"), *folder.glob("*.h")])
    assert set(SOURCES) <= set(files) and (folder / "lstm.cpp") in files
    for f in files:
        rel = f.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), f"{rel} is not in package-data"
