"""A character vocabulary: the sorted distinct characters of a corpus; a character's id is its index."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from rnnkit.data.text import CorpusError


@dataclass(frozen=True)
class Vocab:
    """Characters sorted by code point, so the same text always gives the same ids."""

    chars: tuple[str, ...]

    def __post_init__(self):
        if not self.chars:
            raise CorpusError("a vocabulary needs at least one character, got none")
        if any(not isinstance(c, str) or len(c) != 1 for c in self.chars):
            raise CorpusError("a vocabulary holds single characters")
        if list(self.chars) != sorted(set(self.chars)):
            raise CorpusError("vocabulary characters must be distinct and sorted by code point")
        # code points as a sorted array: encoding is then one np.searchsorted over the whole text
        object.__setattr__(self, "_codes", np.array([ord(c) for c in self.chars], dtype=np.uint32))

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls(tuple(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """The characters of ``text`` that are not in the vocabulary, sorted."""
        return sorted(set(text) - set(self.chars))

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        """str (N characters) -> int64 ids (N,). Unknown characters raise CorpusError naming them."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.searchsorted(self._codes, codes)
        ok = ids < len(self.chars)
        ok[ok] = self._codes[ids[ok]] == codes[ok]
        if not ok.all():
            bad = self.unknown(text)
            shown = ", ".join(repr(c) for c in bad[:10]) + (" ..." if len(bad) > 10 else "")
            raise CorpusError(
                f"{what} has {len(bad)} character(s) outside the vocabulary of {len(self)}: {shown}"
            )
        return ids.astype(np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))

    def to_json(self) -> str:
        return json.dumps({"format": "rnnkit-vocab", "version": 1, "chars": list(self.chars)},
                          ensure_ascii=True, indent=0)

    @classmethod
    def from_json(cls, text: str, source: str = "vocab.json") -> Vocab:
        try:
            data = json.loads(text)
            chars = data["chars"]
        except (ValueError, KeyError, TypeError):
            raise CorpusError(
                f"{source} is not an rnnkit vocabulary (expected JSON with a 'chars' list)"
            ) from None
        if not isinstance(chars, list):
            raise CorpusError(f"{source}: 'chars' must be a list of characters")
        return cls(tuple(chars))
