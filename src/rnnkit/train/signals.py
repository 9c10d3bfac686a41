"""Graceful stop on Ctrl-C (SIGINT) or SIGTERM: finish the step, save, exit 130; twice: exit at once.

A training step is never cut in half by the first signal: the handler only raises a flag that the
loop reads between steps, so the checkpoint it then saves is consistent. A second signal means the
user does not want to wait: the process ends immediately with status 130 (the run folder keeps its
last complete checkpoint, since every file is replaced atomically).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


class StopSignals:
    """Context manager; ``requested`` turns True at the first SIGINT or SIGTERM."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, notify: Callable[[str], None] = lambda text: None):
        self.notify = notify
        self.requested = False
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            os._exit(EXIT_INTERRUPTED)  # second signal: no cleanup, no waiting
        self.requested = True
        self.notify(f"{signal.Signals(signum).name} received: saving after this step "
                    "(press Ctrl-C again to quit at once)")

    def __enter__(self) -> StopSignals:
        # signal handlers can only be installed from the main thread (tests may run elsewhere)
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
