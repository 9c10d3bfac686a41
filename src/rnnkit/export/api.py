"""``to_onnx`` and ``to_pt2``: write an rnnkit layer or model as a file with dynamic batch and time.

Both check everything before any work (eval mode, the example against the model, the output
path), trace the model's program (`rnnkit.export.programs`) with ``torch.export`` (time and
batch axes symbolic), and write the file atomically: a failed export leaves no partial file.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.export import Dim

from rnnkit.data.atomic import atomic_write_bytes
from rnnkit.export.programs import CellProgram, HiddenProgram, Program, StackProgram


class ExportError(ValueError):
    """Bad input to an export: the message says what was expected and what was got."""


def _registry() -> dict[type, type]:
    import rnnkit
    from rnnkit.export import models

    stacks = ("RNN", "LSTM", "GRU", "FusedRNN", "FusedLSTM", "FusedGRU", "LayerNormLSTM",
              "LayerNormGRU")
    table = {getattr(rnnkit, n): StackProgram for n in stacks}
    table |= {getattr(nn, n): StackProgram for n in ("RNN", "LSTM", "GRU")}
    table |= {getattr(rnnkit, n): CellProgram for n in ("RNNCell", "LSTMCell", "GRUCell")}
    table |= {getattr(rnnkit, n): HiddenProgram for n in ("Elman", "Recurrent", "MinGRU", "MinLSTM")}
    table |= {rnnkit.CharLM: models.CharLMProgram, rnnkit.Tagger: models.TaggerProgram,
              rnnkit.SequenceClassifier: models.TaggerProgram, rnnkit.Seq2Seq: models.Seq2SeqProgram}
    return table


def program_for(model: nn.Module, target: str, streaming: bool = False) -> Program:
    """The exportable program of ``model`` (its exact class decides; subclasses may differ)."""
    table = _registry()
    cls = table.get(type(model))
    if cls is None:
        names = ", ".join(sorted({t.__name__ for t in table}))
        raise ExportError(f"cannot export a {type(model).__name__}; supported: {names}")
    if model.training:
        raise ExportError(f"{type(model).__name__} is in training mode; export writes inference "
                          "graphs: call model.eval() first")
    if streaming and getattr(model, "bidirectional", False) and cls is StackProgram:
        raise ExportError(f"{type(model).__name__}: streaming runs forward in time one step at a "
                          "time; a bidirectional layer needs the whole sequence")
    try:
        return cls(model, target, streaming)
    except ValueError as err:  # an option the program cannot take (e.g. no streaming form)
        raise ExportError(str(err)) from None


def check_out_path(path) -> Path:
    """The output path must name a file in an existing, writable folder (checked by creating
    and removing a temporary file there: permission bits do not tell for root or read-only
    mounts)."""
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"output path {path} is a folder; expected a file name")
    folder = path.parent
    if not folder.is_dir():
        raise ExportError(f"cannot write {path}: folder {folder} does not exist")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ExportError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def write_atomic(path: Path, data: bytes) -> None:
    """The whole file or nothing: a failure leaves the old file (if any) and no partial one."""
    try:
        atomic_write_bytes(path, data)
    except OSError as err:
        raise ExportError(f"cannot write {path}: {err.strerror or err}") from None


def prepare_inputs(program: Program, example: dict | None, fill_optional: bool) -> dict:
    """Named inputs for tracing: the example, checked against the program's slots and the model.

    Omitted data inputs are made up (T=3, B=2); omitted optional inputs too when
    ``fill_optional`` (ONNX graphs always have them). The eager model runs once on the result.
    """
    name = program.model_name
    slots = {s.name: s for s in program.slots}
    example = dict(example or {})
    unknown = sorted(set(example) - set(slots))
    if unknown:
        raise ExportError(f"{name}: unknown example input(s) {', '.join(unknown)}; "
                          f"expected some of {', '.join(slots)}")
    T, B = 3, 2
    for k, slot in enumerate(program.slots):
        if slot.role == "data" and example.get(slot.name) is not None:
            sizes = _check_axes(name, slot, example[slot.name])
            if k == 0:  # the first input sets the made-up inputs' length and batch
                T, B = sizes
    inputs = {}
    for slot in program.slots:
        value = example.get(slot.name)
        if value is not None and not isinstance(value, Tensor):
            raise ExportError(f"{name}: example input {slot.name!r} must be a Tensor, "
                              f"got {type(value).__name__}")
        if value is None and (slot.role == "data" or fill_optional):
            try:
                value = slot.make(T, B)
            except ValueError as err:  # an input size the program cannot know
                raise ExportError(str(err)) from None
        if value is not None and slot.role == "lengths":
            value = value.to(torch.int64)
        inputs[slot.name] = value
    try:
        with torch.no_grad():
            program.eager(inputs)
    except (ValueError, RuntimeError, TypeError, IndexError) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ExportError(f"the example does not fit the {name}: {first_line}") from None
    return inputs


def _check_axes(name: str, slot, value) -> tuple[int, int]:
    """A data input's rank and dynamic axes (each at least 2); returns its (T, B)."""
    if not isinstance(value, Tensor):
        raise ExportError(f"{name}: example input {slot.name!r} must be a Tensor, "
                          f"got {type(value).__name__}")
    rank = slot.dims()
    if value.dim() != rank:
        layout = ", ".join(slot.axes.get(i, "F") for i in range(rank))
        raise ExportError(f"{name}: example input {slot.name!r} must be {rank}-D "
                          f"({layout}: batched, with the axes that export makes dynamic), "
                          f"got a {value.dim()}-D tensor")
    sizes = {label: value.shape[axis] for axis, label in slot.axes.items()}
    for label, size in sizes.items():
        if size < 2:
            raise ExportError(f"{name}: example input {slot.name!r} needs at least 2 along axis "
                              f"{label} (a size-1 axis would be fixed in the graph); got {size}")
    T = next((v for k, v in sizes.items() if k in ("T", "S")), 3)
    return T, sizes.get("B", 2)


def dynamic_shapes(program: Program, inputs: dict, separate_states: bool) -> tuple:
    """torch.export's dynamic_shapes, one entry per slot; ``separate_states``: optional inputs get
    their own batch symbol (ONNX: a batch-1 default broadcasts)."""
    dims: dict[str, Dim] = {}

    def dim(label: str) -> Dim:
        return dims.setdefault(label, Dim(label, min=1))

    spec = []
    for slot in program.slots:
        if inputs[slot.name] is None:
            spec.append(None)
            continue
        axes = {}
        for axis, label in slot.axes.items():
            if separate_states and slot.role != "data" and label == "B":
                label = f"B_{slot.name}"
            axes[axis] = dim(label)
        spec.append(axes)
    return tuple(spec)


def _by_signature(module: nn.Module, spec: tuple) -> tuple:
    """Group ``spec`` as torch.export reads it: one entry per parameter of ``forward``, a
    ``*args`` parameter taking the rest as one tuple."""
    grouped, i = [], 0
    for p in inspect.signature(module.forward).parameters.values():
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            grouped.append(tuple(spec[i:]))
            return tuple(grouped)
        if i == len(spec):
            break
        grouped.append(spec[i])
        i += 1
    return tuple(grouped)


@contextlib.contextmanager
def quiet_exporters():
    """Silence torch.export / torch.onnx's chatter (warnings, log lines) for the duration only."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export",
                                              "torch.fx.experimental.symbolic_shapes", "onnxscript")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def export_program(program: Program, inputs: dict, separate_states: bool):
    """``torch.export.export`` of the program on the named inputs that are not None (in slot
    order): the traced program takes exactly those."""
    program.given = tuple(s.name for s in program.slots if inputs[s.name] is not None)
    args = tuple(inputs[n] for n in program.given)
    spec = dynamic_shapes(program, inputs, separate_states)
    shapes = _by_signature(program, tuple(d for d in spec if d is not None))
    # no_grad: an inference graph; with gradients on, scan also traces its backward (slow)
    with quiet_exporters(), torch.no_grad():
        return torch.export.export(program, args, dynamic_shapes=shapes, strict=False)


def to_pt2(model: nn.Module, path, example: dict | None = None, *, streaming: bool = False,
           log: Callable[[str], None] | None = None) -> Path:
    """Write ``model`` as a ``torch.export`` program (``.pt2``) with dynamic batch and time axes.

    ``example``: named inputs (the names of the model's slots, e.g. ``input``, ``h0``, ``c0``,
    ``lengths``); the program takes exactly the inputs the example has (the data inputs always),
    in slot order; without an example, all of them. Load it with
    ``torch.export.load(path).module()``.
    """
    path = check_out_path(path)
    program = program_for(model, "pt2", streaming)
    inputs = prepare_inputs(program, example, fill_optional=example is None)
    (log or _quiet)(f"torch.export: tracing {type(model).__name__} (time and batch dynamic)")
    ep = export_program(program, inputs, separate_states=False)
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    write_atomic(path, buf.getvalue())
    return path


def _quiet(message: str) -> None:
    pass
