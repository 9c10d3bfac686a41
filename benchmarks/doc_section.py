"""Each benchmark writes its full table into its own generated section of docs/benchmarks.md.

    from doc_section import write_section
    write_section(__file__, table, threads=torch.get_num_threads())

    with recorded(__file__, threads=...):  # or: what the block prints becomes the section
        main()

A section lies between ``<!-- begin: benchmarks/NAME.py -->`` and ``<!-- end: benchmarks/NAME.py -->``.
A run replaces its own section and nothing else (the first run of a script appends it), so the
numbers in the docs are always those of the last run, with the header saying how they were made:
the command, the date and the machine (CPU model, threads, and the torch and NumPy versions). The
page is rewritten atomically (``rnnkit.data.atomic``) under a lock, so two scripts may finish at
once. ``--no-doc`` on a script's command line leaves the page alone (smoke runs, experiments).

``fill_section`` fills a marked section of another page (the export and explorer pages), and
``cpu_model`` names the machine for the scripts that write their own header.

Not a library module: the scripts import it from their own folder (Python puts the script's folder
on ``sys.path``). It never imports torch: the NumPy-only benchmarks use it too.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import io
import os
import platform
import shlex
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from rnnkit.data.atomic import atomic_write_text

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
TITLE = """# Benchmarks

Every table on this page is written by the script that measured it, into its own section; the
header of each says how. Rerun a script to refresh its section (``--no-doc`` skips the writing).
Speed is a ratio to a named peer measured in the same run; each script checks correctness first.
"""


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def versions() -> str:
    found = []
    for package in ("torch", "numpy"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


#: environment variables that change what a run measures: shown in the command, and a run under
#: any of them writes its own section (an AVX2 run beside the default one, say)
ENV_KEYS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "RNNKIT_COMPILED")


def run_env() -> str:
    """``NAME=value ...`` of the ENV_KEYS set for this run, or ''."""
    return " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ENV_KEYS if k in os.environ)


def header(script: str, threads: int | None, argv: list[str] | None = None) -> str:
    """The lines above a section's table: command, date, machine."""
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", f"benchmarks/{Path(script).name}", *argv])
    if run_env():
        command = f"{run_env()} {command}"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cores = os.cpu_count()
    machine = f"{cpu_model()}, {threads if threads else '?'} thread(s) ({cores} cores seen"
    if hasattr(os, "getloadavg"):  # a shared machine's other work shows in the ratios' noise
        machine += f", load average {os.getloadavg()[0]:.1f} at the end"
    return (f"`{command}`\n\n{date}; {machine}); {versions()}; Python "
            f"{platform.python_version()}\n")


def replace_section(page: str, name: str, section: str) -> str:
    """``page`` with the section of ``name`` (e.g. ``benchmarks/layers.py``) set to ``section``."""
    begin, end = f"<!-- begin: {name} -->", f"<!-- end: {name} -->"
    block = f"{begin}\n{section.rstrip()}\n{end}"
    start = page.find(begin)
    if start < 0:
        return page.rstrip() + "\n\n" + block + "\n"
    stop = page.find(end, start)
    if stop < 0:
        raise ValueError(f"{DOC}: {begin} has no {end}; fix the page by hand")
    return page[:start] + block + page[stop + len(end):]


def fill_section(doc: Path, script: str, text: str) -> None:
    """Put ``text`` into the section of ``script`` on a prose page (docs/export.md,
    docs/explore.md) whose markers were placed by hand: a page without them is an error, not a
    section appended at the end."""
    name = f"benchmarks/{Path(script).name}"
    page = doc.read_text(encoding="utf-8")
    begin, end = f"<!-- begin: {name} -->", f"<!-- end: {name} -->"
    if begin not in page or end not in page:
        raise SystemExit(f"{doc} has no {begin} ... {end} section to fill")
    atomic_write_text(doc, replace_section(page, name, text))


def add_doc_flag(parser) -> None:
    """``--no-doc`` for a script's argument parser (``write_section`` reads it from argv)."""
    parser.add_argument("--no-doc", action="store_true",
                        help="do not write the table into docs/benchmarks.md")


def write_section(script: str, table: str, *, threads: int | None = None, title: str = "",
                  argv: list[str] | None = None, doc: Path = DOC) -> Path | None:
    """Put ``table`` (Markdown) into the section of ``script`` in ``doc``; returns the page, or
    None when the command line says ``--no-doc``."""
    argv = sys.argv[1:] if argv is None else argv
    if "--no-doc" in argv:
        return None
    name = f"benchmarks/{Path(script).name}"
    title = title or name
    if run_env():  # its own section, beside the default run's
        name, title = f"{name} {run_env()}", f"{title} ({run_env()})"
    section = f"## {title}\n\n{header(script, threads, argv)}\n{table.strip()}\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(str(doc.resolve()).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"rnnkit-doc-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # read, change, write: one script at a time
        page = doc.read_text(encoding="utf-8") if doc.exists() else TITLE
        atomic_write_text(doc, replace_section(page, name, section))
    return doc


def as_markdown(text: str) -> str:
    """Printed lines as Markdown: table rows stay together, other lines become paragraphs."""
    out: list[str] = []
    for line in text.strip().splitlines():
        line = line.rstrip()
        prev = out[-1] if out else ""
        table_row = line.startswith("|")
        if out and line and prev and not (table_row and prev.startswith("|")):
            out.append("")  # a blank line between lines that are not rows of one table
        out.append(line)
    return "\n".join(out)


class _Tee(io.TextIOBase):
    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, s):
        self.copy.write(s)
        return self.stream.write(s)

    def flush(self):
        self.stream.flush()


@contextlib.contextmanager
def recorded(script: str, *, threads=None, title: str = ""):
    """What the block prints (it still prints) becomes the script's section, when the block ends
    without an error. ``threads``: a number, or a function called at the end. ``--no-doc`` is
    taken off ``sys.argv`` before the block parses it."""
    argv = sys.argv[1:]
    if "--no-doc" in argv:
        sys.argv.remove("--no-doc")
        yield
        return
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield
    write_section(script, as_markdown(tee.copy.getvalue()), argv=argv, title=title,
                  threads=threads() if callable(threads) else threads)
