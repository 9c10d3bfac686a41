"""Training metrics: rows kept in memory, written as CSV and a loss-curve PNG (and to TensorBoard).

The CSV and the PNG are rewritten whole and atomically, so a reader never sees half a file and a
resumed run continues the same table (rows after the resumed step are dropped: they belong to the
part of the old run that the checkpoint does not hold). TensorBoard logging happens when
``torch.utils.tensorboard`` can be imported (the ``tensorboard`` package is installed).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from rnnkit.train.checkpoint import METRICS, PLOT, write_file

COLUMNS = ("step", "epoch", "elapsed_s", "lr", "train_loss", "val_loss", "val_bpc", "chars_per_s",
           "grad_norm")


class Metrics:
    def __init__(self, run_dir: Path, *, enabled: bool = True, tensorboard: bool = True):
        self.run_dir, self.enabled = run_dir, enabled
        self.rows: list[dict] = []
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(str(run_dir / "tensorboard"))

    def load(self, up_to_step: int) -> None:
        """Continue the table of a resumed run: its rows up to ``up_to_step``."""
        path = self.run_dir / METRICS
        if not path.is_file():
            return
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                try:
                    if int(row["step"]) <= up_to_step:
                        self.rows.append({k: row.get(k, "") for k in COLUMNS})
                except (KeyError, ValueError):
                    continue  # a damaged row is not worth failing a resume over

    def log(self, **values) -> None:
        if not self.enabled:
            return
        self.rows.append({k: _fmt(values.get(k)) for k in COLUMNS})
        if self._tb is not None:
            for key in ("train_loss", "val_loss", "lr", "chars_per_s", "grad_norm"):
                if values.get(key) is not None:
                    self._tb.add_scalar(key, values[key], values["step"])

    def write(self, plot: bool = False) -> None:
        if not self.enabled:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_file(self.run_dir / METRICS, buf.getvalue())
        if plot:
            write_file(self.run_dir / PLOT, self.plot_png())
        if self._tb is not None:
            self._tb.flush()

    def plot_png(self) -> bytes:
        # a bare Figure draws and saves without pyplot, so no process-wide backend is chosen
        from matplotlib.figure import Figure

        def series(key):
            pts = [(int(r["step"]), float(r[key])) for r in self.rows if r.get(key) not in ("", None)]
            return [p[0] for p in pts], [p[1] for p in pts]

        fig = Figure(figsize=(7, 4), dpi=100)
        ax = fig.add_subplot()
        steps, train = series("train_loss")
        ax.plot(steps, train, label="train (mean over log interval)", lw=1)
        steps, val = series("val_loss")
        ax.plot(steps, val, "o-", label="validation", ms=4)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats per character)")
        ax.grid(alpha=0.3)
        ax.legend()
        if val:
            ax.set_title(f"last validation loss {val[-1]:.4f} nats/char")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)
