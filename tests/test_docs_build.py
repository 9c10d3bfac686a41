"""The documentation site builds with ``mkdocs build --strict`` (any warning is an error), and its
API reference names every public object of rnnkit, rnnkit.scratch and rnnkit.train."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = ROOT / "docs" / "api"


def documented() -> list[str]:
    """Every ``::: dotted.path`` directive of the API reference pages."""
    paths = []
    for page in sorted(API_PAGES.glob("*.md")):
        paths += re.findall(r"^::: ([\w.]+)[ \t]*$", page.read_text(encoding="utf-8"), re.MULTILINE)
    return paths


def resolve(path: str):
    """The object a dotted path names: a module, or an attribute of one."""
    try:
        return importlib.import_module(path)
    except ImportError:
        parent, _, name = path.rpartition(".")
        return getattr(importlib.import_module(parent), name)


def test_reference_covers_the_public_api():
    """Each public name is documented under some path (rnnkit.TrainConfig as rnnkit.train.TrainConfig),
    directly or as a member defined in a module the reference renders whole."""
    import rnnkit
    import rnnkit.scratch
    import rnnkit.train

    covered = set()
    for path in documented():
        obj = resolve(path)
        covered.add(id(obj))
        if inspect.ismodule(obj):  # a module directive renders the members it defines
            covered |= {id(m) for n, m in vars(obj).items()
                        if not n.startswith("_") and getattr(m, "__module__", None) == obj.__name__}
    public = {f"rnnkit.{n}" for n in rnnkit.__all__ if n != "__version__"}
    public |= {f"rnnkit.scratch.{n}" for n in rnnkit.scratch.__all__}
    public |= {f"rnnkit.train.{n}" for n in rnnkit.train.__all__}
    missing = sorted(p for p in public if id(resolve(p)) not in covered)
    assert not missing, f"docs/api/*.md documents none of {missing}"


def test_docs_build_strict(tmp_path):
    why = "the docs extra is not installed: pip install -e '.[docs]'"
    pytest.importorskip("mkdocs", reason=why)
    pytest.importorskip("mkdocstrings_handlers.python", reason=why)
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout[-4000:]}{result.stderr[-6000:]}"
    # each directive became a rendered object: a heading and, for the layers, their signatures
    page = (site / "api" / "layers" / "index.html").read_text(encoding="utf-8")
    directives = (API_PAGES / "layers.md").read_text(encoding="utf-8").count("\n::: ")
    assert page.count('class="doc doc-heading"') >= directives and "hidden_size" in page
