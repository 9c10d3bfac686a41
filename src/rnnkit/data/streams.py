"""Parallel streams of a token sequence, cut into windows, for stateful truncated BPTT.

The N ids are cut into B contiguous streams of L = (N - 1 - o) // B inputs each (o is the epoch's
start offset, below); stream b reads ``ids[o + b L : o + (b+1) L + 1]``. Window k of an epoch is

    x[t, b] = ids[o + b L + k T + t],    y[t, b] = x[t + 1, b],    t < T        (T, B), time-major

so stream b's window k + 1 continues exactly where window k stopped: the recurrent state at the end
of one window is the right initial state of the next (carried, detached from the graph between
windows: truncated BPTT, Williams & Peng 1990; Sutskever 2013; the char-rnn recipe). An epoch ends
when a stream has fewer than T inputs left; the next epoch starts the streams again from a zero state,
shifted by a new offset ``o`` in [0, T) so that window edges fall on different characters. The offset
of epoch e is drawn from ``numpy.random.default_rng([seed, e])``: the position (epoch, window) is the
whole state, so a resumed run reads exactly the windows a straight run would.

Data parallelism: with W ranks each rank owns B / W consecutive streams (``rank``, ``world_size``).
"""

# ruff: noqa: F722 (jaxtyping shape strings such as "T B" are not Python expressions)
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from jaxtyping import Int

from rnnkit.checks import check_positive_int


@dataclass
class Batch:
    x: Int[np.ndarray, "T B"]
    y: Int[np.ndarray, "T B"]
    reset: bool  # first window of an epoch: start from a zero state


class Streams:
    """An endless sequence of (x, y) windows over ``ids``; its position is ``(epoch, window)``."""

    def __init__(
        self,
        ids: Int[np.ndarray, " N"],
        batch_size: int,
        seq_len: int,
        *,
        seed: int = 0,
        shift: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        ids = np.asarray(ids, dtype=np.int64)
        check_positive_int("batch_size", batch_size)
        check_positive_int("seq_len", seq_len)
        if len(ids) < batch_size * seq_len + 1:
            raise ValueError(
                f"{batch_size} streams of {seq_len} steps need at least "
                f"{batch_size * seq_len + 1} ids, got {len(ids)}"
            )
        if batch_size % world_size:
            raise ValueError(
                f"batch_size must be divisible by the number of processes: got {batch_size} "
                f"streams for {world_size} processes"
            )
        self.ids, self.batch_size, self.seq_len = ids, batch_size, seq_len
        self.seed, self.shift = seed, shift
        per_rank = batch_size // world_size
        self._streams = np.arange(rank * per_rank, (rank + 1) * per_rank)  # this rank's streams
        self.epoch, self.window = 0, 0

    def layout(self, epoch: int) -> tuple[int, int, int]:
        """(offset o, stream length L, full windows per epoch) of ``epoch``."""
        n, B, T = len(self.ids), self.batch_size, self.seq_len
        offset = 0
        if self.shift and epoch > 0:
            slack = n - 1 - B * T  # the offset must leave every stream at least one window
            offset = int(np.random.default_rng([self.seed, epoch]).integers(0, min(T, slack + 1)))
        length = (n - 1 - offset) // B
        return offset, length, length // T

    def window_at(self, epoch: int, window: int, steps: int | None = None) -> Batch:
        offset, length, _ = self.layout(epoch)
        T = self.seq_len if steps is None else steps
        start = offset + self._streams * length + window * self.seq_len  # (B,)
        idx = start[None, :] + np.arange(T)[:, None]  # (T, B)
        return Batch(self.ids[idx], self.ids[idx + 1], reset=window == 0)

    def next(self) -> Batch:
        """The window at the current position, then advance (to the next epoch after its last)."""
        batch = self.window_at(self.epoch, self.window)
        self.window += 1
        if self.window >= self.layout(self.epoch)[2]:
            self.epoch, self.window = self.epoch + 1, 0
        return batch

    def one_pass(self) -> Iterator[Batch]:
        """Every window of epoch 0 plus a last shorter one: all B L predictions, each once.

        For evaluation: at most B - 1 of the N - 1 predictions (the remainder of (N - 1) / B) are
        left out.
        """
        _, length, windows = self.layout(0)
        for k in range(windows):
            yield self.window_at(0, k)
        rest = length - windows * self.seq_len
        if rest:
            yield self.window_at(0, windows, steps=rest)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "window": self.window}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, window = int(state["epoch"]), int(state["window"])
        if epoch < 0 or not 0 <= window < max(1, self.layout(epoch)[2]):
            raise ValueError(f"stream position out of range: epoch {epoch}, window {window}")
        self.epoch, self.window = epoch, window
