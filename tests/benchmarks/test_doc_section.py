"""benchmarks/doc_section.py: a run replaces its own section of the page and nothing else, with
the command, date and machine in its header; ``--no-doc`` leaves the page alone."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import doc_section  # noqa: E402


def test_sections_are_replaced_in_place_and_appended_once(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc_section.write_section("benchmarks/a.py", "| x |\n|---|\n| 1 |", threads=2, argv=["--quick"],
                              doc=doc)
    doc_section.write_section("benchmarks/b.py", "table b", threads=1, argv=[], doc=doc)
    doc_section.write_section("benchmarks/a.py", "| x |\n|---|\n| 2 |", threads=2, argv=[], doc=doc)
    page = doc.read_text()
    assert page.startswith("# Benchmarks")
    assert page.count("<!-- begin: benchmarks/a.py -->") == 1 and "| 1 |" not in page
    assert page.index("benchmarks/a.py -->") < page.index("<!-- begin: benchmarks/b.py -->")
    a = page[page.index("<!-- begin: benchmarks/a.py -->"):page.index("<!-- end: benchmarks/a.py")]
    assert "`python benchmarks/a.py`" in a and "| 2 |" in a and "2 thread(s)" in a
    assert "UTC" in a and doc_section.cpu_model() in a and "numpy" in a
    assert "table b" in page  # the other script's section is untouched


def test_no_doc_and_a_broken_page(tmp_path):
    doc = tmp_path / "benchmarks.md"
    assert doc_section.write_section("benchmarks/a.py", "t", argv=["--no-doc"], doc=doc) is None
    assert not doc.exists()
    doc.write_text("<!-- begin: benchmarks/a.py -->\nno end marker\n")
    with pytest.raises(ValueError, match="has no <!-- end: benchmarks/a.py -->"):
        doc_section.write_section("benchmarks/a.py", "t", argv=[], doc=doc)
    assert doc.read_text() == "<!-- begin: benchmarks/a.py -->\nno end marker\n"


def test_printed_lines_become_markdown():
    text = "torch 2, 2 threads\ncheck: ok\n\n| a | b |\n|---|---|\n| 1 | 2 |\ndone"
    assert doc_section.as_markdown(text) == (
        "torch 2, 2 threads\n\ncheck: ok\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\ndone")


def test_a_run_under_an_isa_variable_writes_its_own_section(tmp_path, monkeypatch):
    doc = tmp_path / "benchmarks.md"
    doc_section.write_section("benchmarks/a.py", "default", argv=[], doc=doc)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    doc_section.write_section("benchmarks/a.py", "avx2", argv=[], doc=doc)
    page = doc.read_text()
    assert "default" in page and "avx2" in page
    assert "<!-- begin: benchmarks/a.py ATEN_CPU_CAPABILITY=avx2 -->" in page
    assert "`ATEN_CPU_CAPABILITY=avx2 python benchmarks/a.py`" in page


def test_fill_section_of_a_prose_page(tmp_path):
    """export.py and trace.py fill the section placed by hand in their page: the text between the
    markers is replaced (as ``text`` + the end marker), the prose around it kept to the byte; a
    page without the markers is refused and left alone."""
    doc = tmp_path / "export.md"
    begin, end = "<!-- begin: benchmarks/export.py -->", "<!-- end: benchmarks/export.py -->"
    doc.write_text(f"# Export\n\nprose before\n\n{begin}\nold table\n{end}\n\nprose after\n")
    doc_section.fill_section(doc, "/somewhere/benchmarks/export.py", "| new |\n|---|\n")
    want = f"# Export\n\nprose before\n\n{begin}\n| new |\n|---|\n{end}\n\nprose after\n"
    assert doc.read_text() == want
    doc_section.fill_section(doc, "benchmarks/export.py", "| newer |\n")  # again, in place
    assert doc.read_text() == want.replace("| new |\n|---|\n", "| newer |\n")
    other = tmp_path / "explore.md"
    other.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="has no <!-- begin: benchmarks/trace.py -->"):
        doc_section.fill_section(other, "benchmarks/trace.py", "t")
    assert other.read_text() == "no markers here\n"
