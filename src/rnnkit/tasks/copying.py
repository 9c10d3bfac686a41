"""The copy task (Hochreiter & Schmidhuber 1997; the form of Arjovsky et al. 2016): read K symbols,
wait T steps, then write the K symbols back.

Alphabet of 10 tokens: 0 is the blank, 1..8 are data symbols, 9 is the delimiter ("go"). With K = 10
symbols to copy and a delay T, a sequence has T + 2K steps::

    input : s_1 .. s_K   0 ... 0 (T-1 blanks)   9   0 ... 0 (K blanks)
    target: 0 ... 0 (T + K blanks)                   s_1 .. s_K

Inputs are token ids (B, T+2K) (one-hot them for an RNN); targets are token ids (B, T+2K).

Memoryless baseline: output blank for the first T + K steps, then a uniform guess over the 8 data
symbols; its cross-entropy per step is ``K log 8 / (T + 2K)`` (``10 log 8 / (T + 20)`` in Arjovsky et
al. 2016).
"""

from __future__ import annotations

# ruff: noqa: F722 (jaxtyping shape strings such as "B T H" are not Python expressions)
import math

import torch
from jaxtyping import Int
from torch import Tensor

from rnnkit.checks import check_positive_int

BLANK, DELIMITER, NUM_DATA_SYMBOLS, VOCAB_SIZE = 0, 9, 8, 10


def copy_batch(
    batch_size: int, delay: int, num_symbols: int = 10, generator: torch.Generator | None = None
) -> tuple[Int[Tensor, "B L"], Int[Tensor, "B L"]]:
    """One batch of the copy task: input ids and target ids, both (B, delay + 2 * num_symbols)."""
    check_positive_int("batch_size", batch_size)
    check_positive_int("delay", delay)
    check_positive_int("num_symbols", num_symbols)
    K, L = num_symbols, delay + 2 * num_symbols
    data = torch.randint(1, NUM_DATA_SYMBOLS + 1, (batch_size, K), generator=generator)  # (B, K)
    x = torch.full((batch_size, L), BLANK, dtype=torch.long)
    x[:, :K] = data
    x[:, K + delay - 1] = DELIMITER  # after the T-1 blanks that follow the data
    y = torch.full((batch_size, L), BLANK, dtype=torch.long)
    y[:, -K:] = data
    return x, y


def copy_baseline(delay: int, num_symbols: int = 10) -> float:
    """Cross-entropy per step (nats) of the best memoryless strategy: K log 8 / (T + 2K)."""
    return num_symbols * math.log(NUM_DATA_SYMBOLS) / (delay + 2 * num_symbols)
