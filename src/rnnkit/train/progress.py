"""Progress display: a tqdm bar when stderr is a terminal, plain log lines when it is not (CI, files)."""

from __future__ import annotations

import sys
import time


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """``update(step, loss=..., chars_per_s=..., lr=..., eta=...)`` after each step."""

    def __init__(self, total: int, initial: int = 0, *, every: int = 50, enabled: bool = True,
                 stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled, self.every, self.total = enabled, every, total
        self._bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, file=self.stream, unit="step",
                             dynamic_ncols=True, smoothing=0.1)
        self._last = time.perf_counter()

    def update(self, step: int, *, loss: float, chars_per_s: float, lr: float, eta: float) -> None:
        """``step`` is the number of steps done; the bar moves every step, lines every ``every``."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            if step % self.every == 0 or step == self.total:
                self._bar.set_postfix_str(
                    f"loss {loss:.4f}, {chars_per_s:,.0f} chars/s, left {format_seconds(eta)}",
                    refresh=False,
                )
        elif step % self.every == 0 or step == self.total:
            print(f"step {step}/{self.total} | loss {loss:.4f} | lr {lr:.2e} | "
                  f"{chars_per_s:,.0f} chars/s | eta {format_seconds(eta)}",
                  file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class WorkProgress:
    """Progress of one piece of work counted in units (characters scored, characters drawn).

    A tqdm bar when the stream is a terminal; otherwise a log line once ``interval`` seconds have
    passed since the last one (work shorter than that prints nothing), so no log is silent longer.
    """

    def __init__(self, total: int, what: str, *, unit: str = "chars", stream=None,
                 enabled: bool = True, interval: float = 5.0):
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.what, self.unit = total, what, unit
        self.enabled, self.interval, self.done = enabled and total > 0, interval, 0
        self._bar = None
        self._start = self._last = time.perf_counter()
        if self.enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=what, unit=f" {unit}", unit_scale=True, leave=False,
                             file=self.stream, dynamic_ncols=True)

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            rate = self.done / max(now - self._start, 1e-9)
            left = (self.total - self.done) / max(rate, 1e-9)
            print(f"{self.what}: {self.done:,}/{self.total:,} {self.unit} "
                  f"({100 * self.done / self.total:.0f}%), {format_seconds(left)} left",
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> WorkProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
