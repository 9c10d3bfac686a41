"""Export a run folder: a char LM from ``rnnkit train``, or a task model from ``rnnkit task``.

    load_run("runs/demo")             -> (model in eval mode, metadata for the exported file)
    export_run("runs/demo", "onnx")   -> runs/demo/model.onnx

Char-LM runs write ``config.json`` with format ``rnnkit-charlm-run`` (see
`rnnkit.train.checkpoint`); task runs write ``config.json`` with ``kind`` ``memory_task`` or
``transduction`` and ``model.safetensors`` (``rnnkit task ... --out-dir``). The char LM's file
carries its vocabulary (``rnnkit.vocab`` in the ONNX metadata), so `rnnkit.export.ort_sample`
needs nothing else.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import torch

from rnnkit.export.api import ExportError, to_pt2
from rnnkit.export.onnx_file import to_onnx

FORMATS = ("onnx", "pt2")
WEIGHTS = "model.safetensors"


def _read_config(run: Path) -> dict:
    if not run.is_dir():
        raise ExportError(f"no such run folder: {run}")
    path = run / "config.json"
    if not path.is_file():
        raise ExportError(f"{run} has no config.json; expected a run folder from `rnnkit train` "
                          "or `rnnkit task ... --out-dir`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise ExportError(f"{path} is not readable JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ExportError(f"{path} is not an rnnkit run config (expected a JSON object)")
    return doc


def _task_model(run: Path, doc: dict):
    """A memory-task (Tagger / SequenceClassifier) or transduction (Seq2Seq) run's model."""
    from safetensors.torch import load_file

    if doc.get("kind") == "memory_task":
        from rnnkit.tasks.memory import MemoryTaskConfig as Config
        from rnnkit.tasks.memory import build_memory_model as build
    else:
        from rnnkit.tasks.train_transduction import TransductionConfig as Config
        from rnnkit.tasks.train_transduction import build_seq2seq as build
    names = {f.name for f in dataclasses.fields(Config)}
    try:
        config = Config(**{k: v for k, v in doc.items() if k in names})
    except (TypeError, ValueError) as err:
        raise ExportError(f"{run / 'config.json'}: {err}") from None
    weights = run / WEIGHTS
    if not weights.is_file():
        raise ExportError(f"{run} has no {WEIGHTS}: the run saved no model")
    with torch.random.fork_rng():  # the builders seed torch's global generator; keep the caller's
        model = build(dataclasses.replace(config, device="cpu"))
    try:
        model.load_state_dict(load_file(str(weights)))
    except (RuntimeError, OSError) as err:  # a shape mismatch or an unreadable file
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ExportError(f"{weights} does not fit the run's model: {first}") from None
    return model


def load_run(run_dir) -> tuple[torch.nn.Module, dict[str, str]]:
    """(model in eval mode, metadata strings) of a run folder; ExportError if it is not one."""
    from rnnkit.train.config import RUN_FORMAT

    run = Path(run_dir)
    doc = _read_config(run)
    if doc.get("format") == RUN_FORMAT:
        from rnnkit.train import CheckpointError, load_model

        if not (run / WEIGHTS).is_file():
            raise ExportError(f"{run} has no {WEIGHTS}: the run saved no model yet")
        try:
            model, vocab, _ = load_model(run)
        except CheckpointError as err:
            raise ExportError(str(err)) from None
        return model.eval(), {"rnnkit.task": "charlm", "rnnkit.vocab": vocab.to_json()}
    kind = doc.get("kind")
    if kind in ("memory_task", "transduction"):
        return _task_model(run, doc).eval(), {"rnnkit.task": f"{kind}:{doc.get('task')}"}
    raise ExportError(f"{run / 'config.json'} is not an rnnkit run (expected format "
                      f"{RUN_FORMAT!r} or kind 'memory_task' / 'transduction')")


def default_out(run_dir, fmt: str, streaming: bool = False) -> Path:
    """``RUN_DIR/model.onnx``, ``model-step.onnx`` (streaming), ``model.pt2``..."""
    return Path(run_dir) / f"model{'-step' if streaming else ''}.{fmt}"


def export_run(run_dir, fmt: str = "onnx", out=None, *, streaming: bool = False,
               log: Callable[[str], None] | None = None) -> Path:
    """Export a run folder's model; returns the written file's path."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    model, meta = load_run(run_dir)
    out = Path(out) if out is not None else default_out(run_dir, fmt, streaming)
    if fmt == "onnx":
        return to_onnx(model, out, streaming=streaming, metadata=meta, log=log)
    return to_pt2(model, out, streaming=streaming, log=log)
