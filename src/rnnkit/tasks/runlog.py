"""A run folder: ``config.json`` (the run's settings) and ``metrics.csv`` (one row per evaluation).

Written by ``rnnkit task ... --out-dir DIR`` and read by ``rnnkit curves DIR``. The columns are the
union of the keys logged, in first-seen order; a value missing from a row (or None) is left empty.
Both files are written atomically (`rnnkit.data.atomic`): a reader never sees half of one.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, is_dataclass
from pathlib import Path

from rnnkit.data.atomic import atomic_write_text


def write_run_folder(out_dir: str | Path, config, rows: list[dict], extra: dict | None = None) -> Path:
    """Write ``config.json`` (a dataclass or dict, plus ``extra``) and ``metrics.csv`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = asdict(config) if is_dataclass(config) else dict(config)
    cfg.update(extra or {})
    atomic_write_text(out / "config.json", json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "metrics.csv", buf.getvalue())
    return out
