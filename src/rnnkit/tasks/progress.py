"""Progress of a training loop of known length: a tqdm bar on a terminal, log lines otherwise.

An instance is the ``on_step(step, loss)`` callback of `train_memory_task`
and `train_transduction`. Off a terminal (a CI log, a file,
a pipe) it prints a line after the first step, then whenever ``interval`` seconds have passed since
the last line, and after the last step, so a long run is never silent for long and a short one
still says it ran.
"""

from __future__ import annotations

import os
import sys
import time


def format_seconds(seconds: float) -> str:
    """``75.4 -> '1:15'``, ``3725 -> '1:02:05'``."""
    m, s = divmod(max(0, int(round(seconds))), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _terminal(stream) -> bool:
    """A terminal a bar can be drawn on: a tty with a width (a pty of 0 columns, as some container
    and CI runners give, would show tqdm's bar as nothing at all)."""
    if not getattr(stream, "isatty", lambda: False)():
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):  # no file descriptor: trust isatty
        return True


class StepProgress:
    """``progress(step, loss)`` after each of ``total`` steps; ``write(text)`` for other lines.

    ``enabled=False`` prints nothing (``--quiet``). ``stream`` (default stderr) carries the bar or
    the lines; ``write`` prints to stdout without breaking the bar.
    """

    def __init__(self, total: int, desc: str, *, stream=None, enabled: bool = True,
                 interval: float = 4.0):
        self.total, self.desc, self.enabled, self.interval = total, desc, enabled, interval
        self.stream = stream if stream is not None else sys.stderr
        self._bar = None
        self._start = self._last = time.monotonic()
        self._first: float | None = None  # when step 1 ended: the rate is timed from there (the
        # first step also pays for building the model, the first evaluation, lazy imports)
        if enabled and total > 0 and _terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="step", file=self.stream,
                             dynamic_ncols=True, smoothing=0.1)

    def __call__(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
            return
        now = time.monotonic()
        if self._first is None:
            self._first = now
        if step == 1 or step == self.total or now - self._last >= self.interval:
            left = ""
            if 1 < step < self.total:
                left = f", {format_seconds((now - self._first) / (step - 1) * (self.total - step))} left"
            print(f"{self.desc}: step {step}/{self.total} | loss {loss:.4f} | "
                  f"{format_seconds(now - self._start)} elapsed{left}", file=self.stream, flush=True)
            self._last = now

    def write(self, text: str) -> None:
        """A line on stdout (an evaluation row, say), printed above the bar when there is one."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> StepProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
