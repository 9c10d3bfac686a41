"""Reading a text corpus: UTF-8 (a byte-order mark is fine), Unicode NFC, a train/validation split.

Every problem a user can cause (a missing file, a directory, invalid UTF-8, a corpus too small to
train on) raises `CorpusError` with one line that says what was expected and what was found;
the command line prints it without a traceback.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from rnnkit.checks import check_range, errors_as


class CorpusError(ValueError):
    """A corpus that cannot be used as given: the message says why and what to do."""


def decode_text(raw: bytes, source: str = "text") -> str:
    """UTF-8 bytes -> NFC-normalised str. A leading byte-order mark is dropped.

    NFC makes "é" one character whether the file spelled it as one code point or as "e" plus a
    combining accent, so the vocabulary does not depend on how an editor saved the file.
    """
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        bad = raw[err.start : err.end]
        raise CorpusError(
            f"{source}: invalid UTF-8 at byte {err.start} (line {line}, column {column}): "
            f"{err.reason}, bytes {bad!r}; expected a UTF-8 text file"
        ) from None
    return unicodedata.normalize("NFC", text)


def read_text(path: str | Path) -> str:
    """The contents of a UTF-8 text file, NFC-normalised (see `decode_text`)."""
    p = Path(path)
    if p.is_dir():
        raise CorpusError(f"{path} is a directory; expected a UTF-8 text file")
    if not p.exists():
        raise CorpusError(f"no such file: {path}")
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise CorpusError(f"cannot read {path}: {err.strerror or err}") from None
    return decode_text(raw, str(path))


def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """(train, validation): the first ``1 - val_fraction`` of the characters, then the rest.

    A contiguous split, as char-rnn and nanoGPT do, so validation text is never seen in training.
    tinyshakespeare (1,115,394 characters) splits into 1,003,854 and 111,540.
    """
    with errors_as(CorpusError):
        check_range("val_fraction", val_fraction, 0, 1, low_open=True, high_open=True)
    n_train = int(len(text) * (1.0 - val_fraction))
    return text[:n_train], text[n_train:]


def check_corpus(
    text: str, *, seq_len: int, batch_size: int, val_fraction: float = 0.1, source: str = "corpus"
) -> tuple[str, str]:
    """Split ``text`` and check that both parts can be used; returns (train, validation).

    Training cuts the training part into ``batch_size`` streams of at least ``seq_len`` inputs plus
    one target each, so it needs ``batch_size * seq_len + 1`` characters; validation needs at least
    two (one input and its target).
    """
    if not text:
        raise CorpusError(f"{source} is empty; expected some text to train on")
    distinct = set(text)
    if len(distinct) < 2:
        raise CorpusError(
            f"{source} has only one distinct character ({next(iter(distinct))!r}); "
            "a language model needs at least two"
        )
    train, val = split_text(text, val_fraction)
    pct = round(100 * (1 - val_fraction))
    if len(train) < seq_len + 1:
        raise CorpusError(
            f"{source} is too short: its training split (first {pct}%) has {len(train):,} "
            f"characters, fewer than seq_len + 1 = {seq_len + 1}; pass a longer text or a "
            "smaller --seq-len"
        )
    need = batch_size * seq_len + 1
    if len(train) < need:
        raise CorpusError(
            f"{source} is too short for --batch-size {batch_size}: its training split has "
            f"{len(train):,} characters, and {batch_size} streams of --seq-len {seq_len} need "
            f"{need:,}; pass a smaller --batch-size (at most {(len(train) - 1) // seq_len})"
        )
    if len(val) < 2:
        raise CorpusError(
            f"{source} leaves the validation split (last {100 - pct}%) with {len(val)} "
            "character(s), too few to measure a loss (need 2); pass a longer text"
        )
    return train, val
