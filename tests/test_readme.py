"""The README runs as written: its ```python blocks, and every command of its ```bash blocks.

The Python blocks run in order in one namespace (later blocks use earlier names), and must print no
warning: a user copying them should see none.

The shell commands run in order in a scratch folder laid out like a fresh clone (the repository's
files linked in), each parsed the way bash parses it (``shlex``) and run with no shell. What the
test changes, openly (``plan`` below holds the rules):

- the install (``python3 -m venv .venv``, ``.venv/bin/pip install ...``) is not run: ``.venv`` in
  the scratch clone is a link to the environment running this suite, which is that install; nor is
  ``sudo apt-get install ...`` (system packages: ``.ci/run`` installs them);
- the test command (``.venv/bin/python -m pytest``) and ``bash .ci/run`` are not run: they run this
  suite, this test included;
- commands that train get short settings appended (the last flag wins in argparse), so that each
  takes seconds: ``SHORT`` below;
- ``tinyshakespeare`` is downloaded once into the cache; the test points ``RNNKIT_CACHE`` at a
  copy of ``../shared/data/tinyshakespeare.txt`` (the same file, checked by SHA-256 as a download
  is), and skips the one command that needs it when there is none.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"

# appended to the commands that train, so that the README's commands take seconds each
SHORT = {
    "train": ["--max-iters", "3", "--hidden-size", "32", "--sample-length", "20"],
    "task": ["--steps", "20", "--eval-every", "10"],
    "gradflow": ["--train-steps", "5"],
    "heatmap --task": ["--train-steps", "5"],
}
NOT_RUN = {
    "install": "the suite runs inside this install: .venv links to it",
    "system": "installs system packages as root; .ci/run does it for CI",
    "suite": "it runs this suite, this test included",
}


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def shell_commands() -> list[list[str]]:
    """Every command of every ```bash block, as argv lists (``a && b`` is two commands)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            assert not {"|", ">", "<", ";", "||"} & set(tokens), f"shell syntax in: {line}"
            while tokens:
                cut = tokens.index("&&") if "&&" in tokens else len(tokens)
                commands.append(tokens[:cut])
                tokens = tokens[cut + 1 :]
    return commands


def plan(argv: list[str]) -> tuple[list[str] | None, str]:
    """(the argv to run, or None; why) for one README command."""
    if argv[:3] == ["python3", "-m", "venv"] or argv[0] == ".venv/bin/pip":
        return None, NOT_RUN["install"]
    if argv[:2] == ["sudo", "apt-get"]:
        return None, NOT_RUN["system"]
    if argv == [".venv/bin/python", "-m", "pytest"] or argv == ["bash", ".ci/run"]:
        return None, NOT_RUN["suite"]
    if argv[0] == ".venv/bin/ruff":
        return argv, "as written"
    assert argv[0] == ".venv/bin/rnnkit", f"the README runs {argv[0]!r}: teach this test about it"
    command = argv[1]
    key = "heatmap --task" if command == "heatmap" and "--task" in argv else command
    if command == "train" and "--preset" in argv and not SHAKESPEARE.is_file():
        return None, f"needs tinyshakespeare, and {SHAKESPEARE} is not here to stand for a download"
    if key in SHORT:
        return argv + SHORT[key], "with short settings"
    return argv, "as written"


def test_readme_has_python_blocks_and_commands():
    assert len(python_blocks()) >= 3
    commands = shell_commands()
    assert [".venv/bin/rnnkit", "train"] in commands  # the first thing a new user runs
    # every rnnkit command says where rnnkit is: the README never activates the venv
    assert not [c for c in commands if c[0] in ("rnnkit", "python", "pip", "torchrun")]


def test_readme_python_blocks_run_without_warnings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k, block in enumerate(python_blocks()):
            try:
                exec(compile(block, f"README block {k + 1}", "exec"), namespace)
            except Exception as err:  # pragma: no cover - the message is the point
                pytest.fail(f"README python block {k + 1} failed: {type(err).__name__}: {err}\n"
                            f"{block}")
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]


@pytest.fixture
def fresh_clone(tmp_path):
    """A folder laid out like a clone, with .venv linked to the environment running the tests."""
    prefix = Path(sys.prefix)
    if not (prefix / "bin" / "rnnkit").exists():
        pytest.skip(f"no rnnkit console script in {prefix}/bin: install with pip install -e .")
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("src", "tests", "benchmarks", "docs", ".ci", "pyproject.toml", "README.md"):
        (clone / name).symlink_to(ROOT / name)
    (clone / ".venv").symlink_to(prefix)
    cache = tmp_path / "cache"
    cache.mkdir()
    if SHAKESPEARE.is_file():
        shutil.copyfile(SHAKESPEARE, cache / "tinyshakespeare.txt")
    return clone, dict(os.environ, RNNKIT_CACHE=str(cache))


def uses_runs(argv: list[str]) -> bool:
    """Whether a command makes or reads run folders (their order matters: runs/latest moves)."""
    return argv[1] in ("train", "sample", "eval", "runs") or any("runs/" in a for a in argv)


def run_in_order(commands, clone, env) -> list[str]:
    """Run (argv, why) pairs one after another; fail on the first that does not exit 0."""
    ran = []
    for run_argv, why in commands:
        proc = subprocess.run(run_argv, cwd=clone, env=env, capture_output=True, text=True,
                              timeout=600)
        shown = shlex.join(run_argv)
        assert proc.returncode == 0, f"{shown} ({why}) exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, f"{shown}:\n{proc.stderr[-3000:]}"
        ran.append(shown)
    return ran


def test_readme_shell_commands_run(fresh_clone):
    clone, env = fresh_clone
    chains: dict[bool, list] = {True: [], False: []}
    skipped = []
    for argv in shell_commands():
        run_argv, why = plan(argv)
        if run_argv is None:
            skipped.append((shlex.join(argv), why))
        else:
            chains[run_argv[0].endswith("rnnkit") and uses_runs(run_argv)].append((run_argv, why))
    # the commands on run folders in README order; the others (tasks, pictures, tools) beside
    # them in a second process at a time: most of each command's time is importing torch
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(run_in_order, chain, clone, env) for chain in chains.values()]
        ran = [shown for future in futures for shown in future.result()]
    assert len(ran) >= 10, ran
    assert all(why in NOT_RUN.values() or "tinyshakespeare" in why for _, why in skipped), skipped
    # what the commands promise to leave behind
    latest = clone / "runs" / "latest"
    assert latest.is_symlink() and (latest / "model.safetensors").is_file()
    assert (clone / "diagram.png").is_file() and (clone / "gradflow.png").is_file()


def test_the_default_run_states_one_time_everywhere(capsys):
    """README, `rnnkit train --help`, TrainConfig's docstring and docs/charlm.md agree: 150 s of
    training, about 2 minutes in all, the number TrainConfig really has."""
    from rnnkit.cli import main
    from rnnkit.train import TrainConfig

    assert TrainConfig().max_time == 150
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    texts = {
        "README.md": README.read_text(encoding="utf-8"),
        "rnnkit train --help": capsys.readouterr().out,
        "TrainConfig": TrainConfig.__doc__,
        "docs/charlm.md": (ROOT / "docs" / "charlm.md").read_text(encoding="utf-8"),
    }
    for where, text in texts.items():
        flat = " ".join(text.split())
        assert "150 s of training" in flat and "about 2 minutes" in flat, where
        assert not re.search(r"(about|~) ?(3|2\.5|three) min", flat), where
