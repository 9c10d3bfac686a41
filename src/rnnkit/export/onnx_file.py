"""``to_onnx``: an rnnkit layer or model as an ONNX file with dynamic batch and time axes.

The program (`rnnkit.export.programs`) is traced by ``torch.export`` and converted by
``torch.onnx.export``: plain RNN / LSTM / GRU stacks become ONNX's own operators, every other
recurrence an ONNX ``Scan`` over its step. Optional inputs (initial states, lengths) get their
defaults as initializers of the same name (ONNX IR >= 4), so a runtime may leave them out.
onnxruntime lists such inputs under ``get_overridable_initializers()`` rather than
``get_inputs()``, and warns once per session that they are not folded as constants.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from onnxscript import ir
from torch import Tensor, nn

from rnnkit._version import __version__
from rnnkit.export import onnx_ops
from rnnkit.export.api import (
    _quiet,
    check_out_path,
    export_program,
    prepare_inputs,
    program_for,
    quiet_exporters,
    write_atomic,
)
from rnnkit.export.programs import Program


class OptionalInputs(nn.Module):
    """The program behind ONNX's optional inputs: a given state may have a batch of 1 (it
    broadcasts), and lengths are clipped to T (the default, one huge value, becomes T)."""

    def __init__(self, program: Program) -> None:
        super().__init__()
        self.program = program
        self.slots, self.outputs = program.slots, program.outputs
        axes = {label: axis for axis, label in program.slots[0].axes.items()}
        self.batch_axis = axes["B"]
        self.time_axis = axes.get("T", axes.get("S"))

        self.given: tuple[str, ...] | None = None

    def forward(self, *args: Tensor | None):
        x, out = args[0], []
        for slot, value in zip(self.slots, args):
            if value is not None and slot.role == "state":
                value = onnx_ops.broadcast_batch(value, x, self.batch_axis, slot.batch_axis)
            elif value is not None and slot.role == "lengths":
                value = onnx_ops.clip_lengths(value, x, self.time_axis, self.batch_axis)
            out.append(value)
        return self.program(*out)


def to_onnx(model: nn.Module, path, example: dict | None = None, *, streaming: bool = False,
            metadata: dict[str, str] | None = None,
            log: Callable[[str], None] | None = None) -> Path:
    """Write ``model`` (eval mode) as ONNX with dynamic batch and time; returns the path.

    ``example``: named inputs to trace with (see each program's slots: ``input``, ``h0``, ``c0``,
    ``lengths``...); made up when omitted. ``streaming``: one time step ``(x_t, state) ->
    (y_t, state)`` instead of a whole sequence. ``metadata``: extra string pairs stored in the file.
    """
    path = check_out_path(path)
    program = program_for(model, "onnx", streaming)
    inputs = prepare_inputs(program, example, fill_optional=True)
    log = log or _quiet
    log(f"torch.export: tracing {type(model).__name__} (time and batch dynamic)")
    top = OptionalInputs(program)
    ep = export_program(top, inputs, separate_states=True)
    log("torch.onnx: converting to ONNX")
    # no_grad: otherwise the exporter's passes make scan trace its backward too (slow, unused)
    with quiet_exporters(), torch.no_grad():
        onnx_program = torch.onnx.export(
            ep, tuple(inputs[s.name] for s in program.slots), dynamo=True, verbose=False,
            input_names=[s.name for s in program.slots], output_names=program.outputs,
        )
    graph_model = onnx_program.model
    add_defaults(graph_model, program)
    props = {"rnnkit.version": __version__, "rnnkit.model": type(model).__name__,
             "rnnkit.streaming": json.dumps(streaming),
             "rnnkit.inputs": json.dumps({s.name: s.role for s in program.slots}),
             **(metadata or {})}
    graph_model.metadata_props.update(props)
    write_atomic(path, ir.to_proto(graph_model).SerializeToString())
    return path


def add_defaults(graph_model: ir.Model, program: Program) -> None:
    """Give each optional graph input its default as an initializer of the same name."""
    graph = graph_model.graph
    by_name = {v.name: v for v in graph.inputs}
    for slot in program.slots:
        if slot.role == "data" or slot.name not in by_name:
            continue
        value = by_name[slot.name]
        if slot.role == "lengths":
            default = torch.full((1,), onnx_ops.FULL_LENGTH, dtype=torch.int64)
        else:
            default = slot.default()
        value.const_value = ir.tensor(default.detach().cpu().contiguous().numpy(), name=slot.name)
        graph.register_initializer(value)
