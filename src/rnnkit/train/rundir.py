"""Run folders: where a new run goes, the ``runs/latest`` link, and the list ``rnnkit runs`` prints.

    runs/charlm-20250101-120000/     one run (see rnnkit.train.checkpoint for its files)
    runs/latest -> charlm-...        the run started (or resumed) last in this runs/ folder

The link is made only in a folder named ``runs`` (the default place), so an ``out`` elsewhere never
leaves a stray ``latest`` in someone's project. It is replaced atomically (a new link renamed over
the old), so ``rnnkit sample runs/latest`` never sees it half made.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rnnkit.train import checkpoint as ckpt

LATEST = "latest"
RUNS = "runs"


def default_out() -> str:
    return time.strftime(f"{RUNS}/charlm-%Y%m%d-%H%M%S")


def check_out(run_dir: Path) -> None:
    """Before any work: the run folder can be created and written (CheckpointError if not)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ckpt.CheckpointError(f"cannot create {run_dir}: a file of that name is in the way")
    parent = run_dir
    while not parent.exists():  # the nearest folder that exists: mkdir -p starts there
        parent = parent.parent
    if not parent.is_dir():
        raise ckpt.CheckpointError(f"cannot create {run_dir}: {parent} is a file, not a folder")
    try:  # the way the atomic writes will create their files
        fd, probe = tempfile.mkstemp(prefix=".rnnkit-probe.", suffix=".tmp", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ckpt.CheckpointError(f"cannot write in {parent}: {err.strerror or err}") from None


def make_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ckpt.CheckpointError(f"cannot create {run_dir}: {err.strerror or err}") from None


def link_latest(run_dir: Path) -> Path | None:
    """Point ``runs/latest`` at ``run_dir`` when it sits in a folder named runs; returns the link.

    A ``latest`` that is a real folder (someone's ``--out runs/latest``) is left alone.
    """
    real = run_dir.resolve()
    if real.parent.name != RUNS:
        return None
    link = real.parent / LATEST
    if link.exists() and not link.is_symlink():
        return None
    if link.is_symlink() and link.resolve() == real:
        return link
    tmp = real.parent / f".{LATEST}.{os.getpid()}.tmp"
    try:
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(real.name, tmp, target_is_directory=True)  # relative: the folder can move
        os.replace(tmp, link)
    except OSError:  # no symlinks here (Windows without the privilege): `rnnkit runs` still lists
        try:
            tmp.unlink()
        except OSError:
            pass
        return None
    return link


@dataclass
class RunSummary:
    path: Path
    model: str  # "lstm 1x384"
    data: str
    step: int | None  # of the last checkpoint; None: none saved yet
    val_loss: float | None  # the last validation loss logged
    modified: float  # seconds since the epoch, of the newest file


def _weights_step(path: Path) -> int | None:
    """The step in model.safetensors' header, read without loading the tensors."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            meta = json.loads(f.read(min(n, 1 << 20))).get("__metadata__") or {}
        return int(meta["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _last_val_loss(path: Path) -> float | None:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            values = [row["val_loss"] for row in csv.DictReader(f) if row.get("val_loss")]
        return float(values[-1]) if values else None
    except (OSError, ValueError, KeyError, IndexError):
        return None


def list_runs(folder: str | Path = RUNS) -> list[RunSummary]:
    """The run folders directly inside ``folder``, oldest first (the ``latest`` link skipped)."""
    folder = Path(folder)
    if not folder.exists():
        raise ckpt.CheckpointError(f"no such folder: {folder} (rnnkit train makes {RUNS}/<name> in "
                                   "the current folder; pass the folder that holds your runs)")
    if not folder.is_dir():
        raise ckpt.CheckpointError(f"{folder} is a file, not a folder of runs")
    runs = []
    for path in sorted(folder.iterdir()):
        if path.is_symlink() or not (path / ckpt.CONFIG).is_file():
            continue
        try:
            doc = json.loads((path / ckpt.CONFIG).read_text(encoding="utf-8"))
            model, cfg = doc["model"], doc["config"]
            desc = f"{model['cell']} {model['num_layers']}x{model['hidden_size']}"
            data = str(cfg["data"])
        except (OSError, ValueError, KeyError, TypeError):
            desc, data = "?", "?"  # a damaged config: still listed, so the user sees it
        modified = max(p.stat().st_mtime for p in path.iterdir() if p.is_file())
        runs.append(RunSummary(path, desc, data, _weights_step(path / ckpt.WEIGHTS),
                               _last_val_loss(path / ckpt.METRICS), modified))
    return sorted(runs, key=lambda r: r.modified)
