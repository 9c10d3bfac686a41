"""Named corpora: one that ships with Python, one fetched once into a cache; or any text file.

* ``python-docs`` (the default): the help topics of Python's own documentation, the dict
  ``pydoc_data.topics.topics`` that every CPython carries (79 topics, ~465k characters, ~103
  distinct characters on 3.11). Joined in sorted-key order so the text is the same on every run of
  a given Python version; nothing is downloaded.
* ``tinyshakespeare``: Karpathy's 1,115,394-character corpus of Shakespeare's plays, downloaded once
  from its public URL into the cache folder (``$RNNKIT_CACHE``, else ``$XDG_CACHE_HOME/rnnkit``,
  else ``~/.cache/rnnkit``) and checked against its SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rnnkit.data.atomic import atomic_write_bytes
from rnnkit.data.text import CorpusError, decode_text, read_text

BUILTIN = "python-docs"

TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


@dataclass(frozen=True)
class Corpus:
    """A loaded corpus: its text and where it came from (a name or a path), for messages."""

    text: str
    source: str


def python_docs_text() -> str:
    """The pydoc help topics joined in sorted-key order, each followed by a blank line."""
    from pydoc_data.topics import topics

    text = "".join(topics[key].strip("\n") + "\n\n" for key in sorted(topics))
    return unicodedata.normalize("NFC", text)


def cache_dir() -> Path:
    if os.environ.get("RNNKIT_CACHE"):
        return Path(os.environ["RNNKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rnnkit"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_tinyshakespeare(timeout: float = 30.0, note=None) -> str:
    """The text of tinyshakespeare, from the cache or downloaded into it once.

    ``note(text)``, when given, is told before a download starts (it can take a while).
    """
    path = cache_dir() / "tinyshakespeare.txt"
    if path.is_file():
        raw = path.read_bytes()
        if _sha256(raw) == TINYSHAKESPEARE_SHA256:
            return decode_text(raw, str(path))
        # a corrupt or partial cache entry (written by something else): fetch it again
    hint = (
        "; if this machine is offline, download it elsewhere and pass the file with --data PATH"
    )
    if note is not None:
        note(f"downloading tinyshakespeare (1.1 MB) from {TINYSHAKESPEARE_URL} into {path}")
    try:
        with urllib.request.urlopen(TINYSHAKESPEARE_URL, timeout=timeout) as response:
            raw = response.read()
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise CorpusError(
            f"cannot download tinyshakespeare from {TINYSHAKESPEARE_URL} ({reason}){hint}"
        ) from None
    if _sha256(raw) != TINYSHAKESPEARE_SHA256:
        raise CorpusError(
            f"the download from {TINYSHAKESPEARE_URL} does not have the expected SHA-256 "
            f"{TINYSHAKESPEARE_SHA256} (got {_sha256(raw)}){hint}"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, raw)
    except OSError:
        pass  # an unwritable cache costs a download next time, nothing more
    return decode_text(raw, TINYSHAKESPEARE_URL)


# name -> function(note=None) returning the text (note: told about slow work before it starts)
NAMED = {BUILTIN: lambda note=None: python_docs_text(), "tinyshakespeare": fetch_tinyshakespeare}


def load_corpus(data: str, *, note=None) -> Corpus:
    """``data`` is a path to a UTF-8 text file or the name of a corpus in `NAMED`.

    An existing path wins over a name, so a file called ``tinyshakespeare`` in the current folder is
    read as a file. ``note(text)``, when given, hears about slow work (a download) before it starts.
    """
    if not data:
        raise CorpusError(f"no corpus given; pass --data PATH or one of: {', '.join(NAMED)}")
    path = Path(data).expanduser()
    if path.exists():
        return Corpus(read_text(path), str(path))
    if data in NAMED:
        return Corpus(NAMED[data](note=note), data)
    raise CorpusError(
        f"no such file: {data} (and not a named corpus; named corpora: {', '.join(NAMED)})"
    )
