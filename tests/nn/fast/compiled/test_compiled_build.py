"""Building the compiled CPU kernels: the errors say why, the fallback order, the progress lines,
and the deprecated ``rnnkit.nn.cpu_kernels`` switches. No test here needs a compiler: the ones
that would build are given a stand-in for ``torch.utils.cpp_extension.load``."""

from __future__ import annotations

import contextvars
import os
import stat

import pytest

from rnnkit.nn.fast.compiled.build import SOURCES, CPUKernelsUnavailable, build, newest_source


def fake_ninja(folder):
    """A ``ninja`` on PATH that answers ``--version``, so the compiler check is reached."""
    path = folder / "ninja"
    path.write_text("#!/bin/sh\necho 1.11.1\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_unavailable_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ninja, no compiler
    with pytest.raises(CPUKernelsUnavailable, match="pip install ninja"):
        build()
    fake_ninja(tmp_path)
    monkeypatch.setenv("CXX", "no-such-compiler-rnnkit")
    with pytest.raises(CPUKernelsUnavailable, match="'no-such-compiler-rnnkit' was"):
        build()


def test_build_falls_back_to_lesser_instruction_sets(tmp_path, monkeypatch):
    """A compiler that cannot build the AVX-512 code gets AVX2 next, then portable code; if all
    fail, the error carries each attempt's reason, and never tries above what torch picked."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    tried = []

    def fake_load(name, sources, extra_cflags, extra_ldflags, verbose):
        assert sources == [str(s) for s in SOURCES]  # one extension from every source
        tried.append(name)
        if not name.endswith("_default"):
            raise RuntimeError(f"compiler rejects {name}")
        return "module"

    assert build("AVX512", loader=fake_load) == "module"
    assert tried == [f"rnnkit_cpu_kernels_{c}" for c in ("avx512", "avx2", "default")]

    def failing(name, **kw):
        raise RuntimeError(f"no luck with {name}")

    with pytest.raises(CPUKernelsUnavailable) as err:
        build("AVX2", loader=failing)
    assert "[AVX2] no luck with rnnkit_cpu_kernels_avx2" in str(err.value)
    assert "[DEFAULT] no luck with rnnkit_cpu_kernels_default" in str(err.value)
    assert "AVX512" not in str(err.value)  # never above what torch picked


def test_a_build_says_so_and_a_cached_load_is_silent(tmp_path, monkeypatch, capsys):
    """A build prints one line when it starts and one with its time when done (it takes about a
    minute); loading a build that is newer than the source prints nothing."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    name = "rnnkit_cpu_kernels_default"

    def fake_load(name, **kw):
        return "module"

    assert build("DEFAULT", loader=fake_load) == "module"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "building the compiled CPU kernels" in err[0]
    assert "built in" in err[1]
    (tmp_path / name).mkdir()
    (tmp_path / name / f"{name}.so").write_bytes(b"")  # newer than the sources: a cached build
    assert build("DEFAULT", loader=fake_load) == "module"
    assert capsys.readouterr().err == ""
    old = newest_source() - 10  # a build older than a source is rebuilt
    os.utime(tmp_path / name / f"{name}.so", (old, old))
    build("DEFAULT", loader=fake_load)
    assert "building" in capsys.readouterr().err


def test_deprecated_enable_and_disable():
    """``cpu_kernels.enable()`` / ``disable()`` warn and set the choice for the calling context
    (run here in a copy of the test's context, so the choice ends with the test)."""
    import rnnkit.nn.cpu_kernels as cpu_kernels

    try:
        cpu_kernels.load()
    except CPUKernelsUnavailable as e:
        pytest.skip(f"compiled CPU kernels unavailable here: {e}")

    def body():
        from rnnkit.options import current

        with pytest.warns(DeprecationWarning, match=r"rnnkit.options\(compiled=True\)"):
            cpu_kernels.enable()
        assert current().compiled is True and cpu_kernels.available()
        with pytest.warns(DeprecationWarning, match=r"rnnkit.options\(compiled=False\)"):
            cpu_kernels.disable()
        assert current().compiled is False

    contextvars.copy_context().run(body)
    from rnnkit.options import current

    assert current().compiled is False  # the test's own context never changed


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
