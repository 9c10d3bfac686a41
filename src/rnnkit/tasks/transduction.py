"""Synthetic transduction: map a digit string to another (reverse it, or sort it), for encoder-decoders.

Tokens: 0 = PAD, 1 = BOS, 2 = EOS, 3..12 = the digits 0..9 (vocabulary V = 13). A batch holds B source
strings of random length in [min_len, max_len], and the decoder's teacher-forcing pair::

    src     (B, S)  digits, PAD after each string's end          src_lengths (B,)
    tgt_in  (B, U)  BOS y_1 .. y_n, PAD after                    U = max_len + 1
    tgt_out (B, U)  y_1 .. y_n EOS, IGNORE_INDEX after           (the loss skips padding)

Reversal is the classic check that the encoder's state holds the whole string; sorting needs counts.
"""

from __future__ import annotations

# ruff: noqa: F722 (jaxtyping shape strings such as "B T H" are not Python expressions)
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from rnnkit.checks import check_choice, check_int, check_positive_int
from rnnkit.tasks.configs import TRANSDUCTIONS
from rnnkit.tasks.losses import IGNORE_INDEX

PAD, BOS, EOS, DIGIT0 = 0, 1, 2, 3
VOCAB_SIZE = DIGIT0 + 10


def transduce(kind: str, digits: list[int]) -> list[int]:
    """The target digits for source digits (plain ints 0..9)."""
    check_choice("transduction", kind, TRANSDUCTIONS)
    return digits[::-1] if kind == "reverse" else sorted(digits)


def encode_digits(text: str) -> list[int]:
    """'407' -> token ids [7, 3, 10]."""
    if not text or any(c not in "0123456789" for c in text):  # str.isdigit also takes "²" and "١"
        raise ValueError(f"expected a string of digits 0-9, got {text!r}")
    return [DIGIT0 + int(c) for c in text]


def decode_digits(ids) -> str:
    """Token ids -> digit string, stopping at EOS or PAD and skipping BOS."""
    out = []
    for i in [int(i) for i in ids]:
        if i in (EOS, PAD):
            break
        if i >= DIGIT0:
            out.append(str(i - DIGIT0))
    return "".join(out)


@dataclass
class TransductionBatch:
    src: Int[Tensor, "B S"]
    src_lengths: Int[Tensor, " B"]
    tgt_in: Int[Tensor, "B U"]
    tgt_out: Int[Tensor, "B U"]


def transduction_batch(
    kind: str,
    batch_size: int,
    min_len: int = 1,
    max_len: int = 8,
    generator: torch.Generator | None = None,
) -> TransductionBatch:
    """A batch of random digit strings and their transductions, padded (see the module docstring)."""
    check_positive_int("batch_size", batch_size)
    check_positive_int("min_len", min_len)
    check_int("max_len", max_len, min_len)
    lengths = torch.randint(min_len, max_len + 1, (batch_size,), generator=generator)
    digits = torch.randint(0, 10, (batch_size, max_len), generator=generator)
    return make_transduction_batch(kind, [d[:n].tolist() for d, n in zip(digits, lengths)])


def make_transduction_batch(kind: str, sources: list[list[int]]) -> TransductionBatch:
    """Pad a list of digit lists (ints 0..9) and their targets into a batch."""
    if not sources or any(len(s) == 0 for s in sources):
        raise ValueError("every source must hold at least one digit")
    B, S = len(sources), max(len(s) for s in sources)
    src = torch.full((B, S), PAD, dtype=torch.long)
    tgt_in = torch.full((B, S + 1), PAD, dtype=torch.long)
    tgt_out = torch.full((B, S + 1), IGNORE_INDEX, dtype=torch.long)
    for b, digits in enumerate(sources):
        n = len(digits)
        target = [DIGIT0 + d for d in transduce(kind, list(digits))]
        src[b, :n] = torch.tensor([DIGIT0 + d for d in digits])
        tgt_in[b, : n + 1] = torch.tensor([BOS, *target])
        tgt_out[b, : n + 1] = torch.tensor([*target, EOS])
    lengths = torch.tensor([len(s) for s in sources])
    return TransductionBatch(src, lengths, tgt_in, tgt_out)
