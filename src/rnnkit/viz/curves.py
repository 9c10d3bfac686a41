"""Training curves from a run folder's ``metrics.csv``.

Any run folder works: the x axis is the first of ``step``, ``iter``, ``iteration``, ``epoch`` present
(the row number otherwise). Columns are grouped by what they measure, one panel (its own y axis)
per group, so a loss and an accuracy never share a scale:

* ``*loss*`` columns: the loss panel;
* ``*acc*`` and ``*match*`` columns (accuracy, exact_match): the accuracy panel, from 0;
* any other column by the word after its last underscore: ``eval_mse`` and ``train_mse`` share the
  ``mse`` panel, ``val_bpc`` has the ``bpc`` panel.

A ``baseline_<word>`` column is the trivial baseline of the ``<word>`` panel, drawn as a dashed line
and labelled with what it is (``baseline_name`` in the run's ``config.json``, when there is one); a
bare ``baseline`` column (older run folders) goes to the first panel that is neither loss nor
accuracy. Bookkeeping columns (time, learning rate, gradient norm, any ``*_per_s`` throughput) are
left out; empty or non-numeric cells are skipped, so runs that log a column only sometimes plot fine.
"""

from __future__ import annotations

import csv
import json
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


UNIT_LABELS = {"loss": "loss", "accuracy": "fraction correct", "mse": "mean squared error",
               "ce": "cross-entropy per step (nats)", "bpc": "bits per character"}


def column_unit(name: str) -> str:
    """The panel a column belongs to: ``loss``, ``accuracy``, or the word after its last underscore."""
    low = name.lower()
    if "acc" in low or "match" in low:
        return "accuracy"
    if "loss" in low:
        return "loss"
    return low.rsplit("_", 1)[-1]


def _baseline_name(path: Path) -> str | None:
    """What the run's baseline is, from ``config.json`` beside ``metrics.csv`` (None if unsaid)."""
    config = (path if path.is_dir() else path.parent) / "config.json"
    try:
        name = json.loads(config.read_text()).get("baseline_name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def _panels(cols: dict[str, list[float]]) -> tuple[dict[str, dict], dict[str, list[float]]]:
    """(``{unit: {column: values}}`` in display order, ``{unit: baseline values}``)."""
    ys = {k: v for k, v in cols.items()
          if k not in X_COLUMNS and not k.lower().endswith("_per_s")  # other axes, throughput
          and not any(k.lower() == s or k.lower().startswith(s + "_") for s in SKIP)}
    baselines = {k[len("baseline_"):].lower(): ys.pop(k) for k in list(ys) if k.lower().startswith("baseline_")}
    legacy = ys.pop("baseline", None)
    panels: dict[str, dict] = {}
    for name, values in ys.items():
        panels.setdefault(column_unit(name), {})[name] = values
    if not panels:
        return {}, {}
    rank = lambda unit: 0 if unit == "loss" else 2 if unit == "accuracy" else 1  # noqa: E731
    panels = dict(sorted(panels.items(), key=lambda kv: rank(kv[0])))
    if legacy is not None:
        unit = next((u for u in panels if u not in ("loss", "accuracy")), next(iter(panels)))
        baselines.setdefault(unit, legacy)
    return panels, {u: v for u, v in baselines.items() if u in panels}


def plot_curves(path: str | Path, title: str | None = None) -> Figure:
    """One panel per kind of column (loss, accuracy, mse, bpc, ...) of a run, against its step."""
    path = Path(path)
    cols = read_metrics(path)
    x_name = next((c for c in X_COLUMNS if c in cols), None)
    n = len(next(iter(cols.values()))) if cols else 0
    x = cols.pop(x_name) if x_name else [float(i) for i in range(n)]
    panels, baselines = _panels(cols)
    if not panels:
        raise ValueError(f"{path}: no numeric metric columns to plot (found {sorted(cols) or 'none'})")
    what = _baseline_name(path)
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(5.0 * ncols, 3.6 * nrows + 0.4), layout="constrained")
    first = None
    for i, (unit, panel) in enumerate(panels.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1, sharex=first)  # one step range for every panel
        first = first or ax
        for name, values in panel.items():
            pts = [(a, b) for a, b in zip(x, values) if not (math.isnan(a) or math.isnan(b))]
            if pts:
                ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None, label=name)
        finite = [b for b in baselines.get(unit, []) if not math.isnan(b)]
        if finite:
            label = f"baseline: {what}, {finite[-1]:.4g}" if what else f"baseline ({unit}) {finite[-1]:.4g}"
            ax.axhline(finite[-1], color="grey", linestyle="--", linewidth=1, label=label)
        values = [v for vals in panel.values() for v in vals if not math.isnan(v)] + finite
        if unit == "accuracy":
            ax.set_ylim(0, max([1.0, *values]) * 1.02)
        elif values and min(values) > 0 and max(values) / min(values) > 30:  # spans decades
            ax.set_yscale("log")
        ax.set_xlabel(x_name or "row")
        ax.set_ylabel(UNIT_LABELS.get(unit, unit))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or f"Training curves: {path.resolve().name}", fontsize=11)
    return fig
