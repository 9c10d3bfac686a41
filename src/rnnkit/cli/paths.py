"""Paths the picture and task commands read and write, checked before any work starts.

* an image to write (``--out``): ``.png`` or ``.svg``, in a folder that exists and takes a file, or
  that can be made inside one (checked by creating and removing a temporary file there, which a
  read-only disk or folder refuses, whoever the user is);
* a run folder to read (``--run``, ``RUN_DIR``): it exists (a link to one, such as ``runs/latest``,
  is as good), it is a folder, it holds ``config.json``.

Images are written atomically (`rnnkit.data.atomic`): an interrupted or failed write leaves the
old file whole. Every failure is one line (`CLIError`), never a traceback.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rnnkit.cli import CLIError

IMAGE_SUFFIXES = (".png", ".svg")


def check_writable_folder(folder: str | Path, what: str) -> None:
    """CLIError unless a file can be written into ``folder``, or into the folders that would be made
    to reach it (the nearest existing one is tried)."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CLIError(f"cannot write {what}: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".rnnkit-check-"):
            pass
    except OSError as err:
        raise CLIError(f"cannot write {what}: {existing} does not take new files "
                       f"({err.strerror or err})") from None


def check_image_path(path: str | Path, flag: str = "--out") -> Path:
    """The image file to write, checked: ``.png`` or ``.svg``, not a folder, its folder writable."""
    out = Path(path)
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise CLIError(f"{flag} must end in .png or .svg, got {out.name!r}")
    if out.is_dir():
        raise CLIError(f"{flag} must name an image file, got the folder {out}")
    check_writable_folder(out.parent, str(out))
    return out


def save_figure(fig, path: Path) -> Path:
    """Write a matplotlib Figure to ``path`` (format from the suffix) atomically, making its folder
    if needed; a full disk or a read-only folder becomes a one-line CLIError (exit status 1)."""
    from rnnkit.data.atomic import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: fig.savefig(f, format=path.suffix[1:].lower()))
    except OSError as err:
        raise CLIError(f"cannot write {path}: {err.strerror or err}", code=1) from None
    return path


def check_run_folder(path: str | Path, flag: str = "--run", needs: str = "config.json") -> Path:
    """A run folder to read: CLIError saying what is wrong if it is missing, not a folder, or has no
    ``needs`` file. A symbolic link to a run folder (``runs/latest``) is accepted."""
    run = Path(path)
    if not run.exists():
        if run.is_symlink():
            raise CLIError(f"{flag}: {run} is a link to {run.readlink()}, which does not exist")
        raise CLIError(f"{flag}: the run folder {run} does not exist")
    if not run.is_dir():
        raise CLIError(f"{flag}: {run} is a file; expected a run folder")
    if not (run / needs).is_file():
        raise CLIError(f"{flag}: {run} is not a run folder (it has no {needs})")
    return run


def run_name(path: str | Path) -> str:
    """The run's own name for titles: through a link (``runs/latest``) to the folder it points at."""
    return Path(path).resolve().name
