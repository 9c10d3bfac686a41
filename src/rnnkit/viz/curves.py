"""Training curves from a run folder's ``metrics.csv``.

Any run folder works: the x axis is the first of ``step``, ``iter``, ``iteration``, ``epoch`` present
(the row number otherwise); every column whose name contains ``loss`` goes on the left panel, the
other numeric quality columns (``metric``, ``accuracy``, ``bpc``, ...) on the right one, and a
``baseline`` column becomes a dashed line. Bookkeeping columns (time, learning rate, gradient norm,
any ``*_per_s`` throughput) are left out; empty or non-numeric cells are skipped, so runs that log a
column only sometimes plot fine.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from matplotlib.figure import Figure

X_COLUMNS = ("step", "iter", "iteration", "epoch")
SKIP = ("seconds", "time", "elapsed", "wall", "lr", "learning_rate", "throughput", "grad_norm")


def read_metrics(path: str | Path) -> dict[str, list[float]]:
    """``metrics.csv`` (a file, or a run folder holding one) as columns of floats (NaN where empty)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no rows")
    columns: dict[str, list[float]] = {}
    for name in rows[0]:
        if name is None:
            continue
        values = [_number(r.get(name)) for r in rows]
        if any(not math.isnan(v) for v in values):  # drop text-only columns
            columns[name.strip()] = values
    return columns


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def plot_curves(path: str | Path, title: str | None = None) -> Figure:
    """Loss curves (left) and other metrics (right) of a run, against its step column."""
    cols = read_metrics(path)
    x_name = next((c for c in X_COLUMNS if c in cols), None)
    n = len(next(iter(cols.values()))) if cols else 0
    x = cols.pop(x_name) if x_name else [float(i) for i in range(n)]
    baseline = cols.pop("baseline", None)
    ys = {k: v for k, v in cols.items()
          if k not in X_COLUMNS and not k.lower().endswith("_per_s")  # other axes, throughput
          and not any(k.lower() == s or k.lower().startswith(s + "_") for s in SKIP)}
    losses = {k: v for k, v in ys.items() if "loss" in k.lower()}
    others = {k: v for k, v in ys.items() if k not in losses}
    if not losses and not others:
        raise ValueError(f"{path}: no numeric metric columns to plot (found {sorted(cols) or 'none'})")
    panels = [p for p in (losses, others) if p]
    fig = Figure(figsize=(5.5 * len(panels), 3.8), layout="constrained")
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for name, values in panel.items():
            pts = [(a, b) for a, b in zip(x, values) if not (math.isnan(a) or math.isnan(b))]
            if pts:
                ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None, label=name)
        # the baseline belongs to the metric it was measured for: the right panel if there is one
        if baseline is not None and (panel is others or len(panels) == 1):
            finite = [b for b in baseline if not math.isnan(b)]
            if finite:
                ax.axhline(finite[-1], color="grey", linestyle="--", linewidth=1, label=f"baseline {finite[-1]:.4g}")
        finite = [v for vals in panel.values() for v in vals if v > 0 and not math.isnan(v)]
        if finite and max(finite) / min(finite) > 30:  # spans decades: a log axis shows it
            ax.set_yscale("log")
        ax.set_xlabel(x_name or "row")
        ax.set_ylabel("loss" if panel is losses else next(iter(panel)) if len(panel) == 1 else "value")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or f"Training curves: {Path(path).name}", fontsize=11)
    return fig
