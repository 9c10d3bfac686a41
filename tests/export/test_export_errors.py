"""Bad input to an export: one clear line before any work, and no file written (not even part)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.export import ExportError, to_onnx, to_pt2
from rnnkit.export.runs import export_run


def _refused(call, folder: Path, *needles: str) -> str:
    before = sorted(os.listdir(folder)) if folder.is_dir() else None
    with pytest.raises(ExportError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    if before is not None:
        assert sorted(os.listdir(folder)) == before, "a file was left behind"
    return message


@pytest.fixture
def lstm():
    return rnnkit.LSTM(3, 5).eval()


@pytest.mark.parametrize("export", [to_onnx, to_pt2])
def test_unsupported_model_and_options(export, tmp_path, lstm):
    out = tmp_path / "m.out"
    _refused(lambda: export(nn.Linear(3, 4).eval(), out), tmp_path, "cannot export a Linear",
             "LSTM")
    _refused(lambda: export(rnnkit.LSTM(3, 5), out), tmp_path, "training mode", "eval()")
    bidir = rnnkit.GRU(3, 5, bidirectional=True).eval()
    _refused(lambda: export(bidir, out, streaming=True), tmp_path, "bidirectional")
    tagger = rnnkit.Tagger(3, 5, 2).eval()
    _refused(lambda: export(tagger, out, streaming=True), tmp_path, "no streaming form")


@pytest.mark.parametrize("export", [to_onnx, to_pt2])
def test_wrong_example(export, tmp_path, lstm):
    out = tmp_path / "m.out"
    _refused(lambda: export(lstm, out, {"input": torch.randn(4, 2, 7)}), tmp_path,
             "input.size(-1) must be equal to input_size. Expected 3, got 7")
    _refused(lambda: export(lstm, out, {"input": torch.randn(4, 3)}), tmp_path,
             "must be 3-D", "got a 2-D tensor")
    _refused(lambda: export(lstm, out, {"input": torch.randn(4, 1, 3)}), tmp_path,
             "at least 2 along axis B", "got 1")
    _refused(lambda: export(lstm, out, {"input": torch.randn(4, 2, 3), "hx": None}), tmp_path,
             "unknown example input(s) hx", "input, h0, c0, lengths")
    bad_state = {"input": torch.randn(4, 2, 3), "h0": torch.randn(1, 3, 5),
                 "c0": torch.randn(1, 3, 5)}
    _refused(lambda: export(lstm, out, bad_state), tmp_path, "Expected hidden[0] size (1, 2, 5)")


def test_example_needed_or_wrong_elsewhere(tmp_path):
    rec = rnnkit.Recurrent(nn.Sequential(nn.Linear(3, 5)), nn.Linear(5, 5), hidden_size=5).eval()
    _refused(lambda: to_onnx(rec, tmp_path / "r.onnx"), tmp_path, "v is not an nn.Linear",
             "give an example input")
    s2s = rnnkit.Seq2Seq(9, 4, 3).eval()
    example = {"src": torch.randint(0, 9, (2, 3)), "tgt_in": torch.randint(0, 9, (2, 1))}
    _refused(lambda: to_pt2(s2s, tmp_path / "s.pt2", example), tmp_path,
             "'tgt_in' needs at least 2 along axis U")


@pytest.mark.parametrize("export", [to_onnx, to_pt2])
def test_output_path_not_writable(export, tmp_path, lstm):
    _refused(lambda: export(lstm, tmp_path / "missing" / "m.onnx"), tmp_path, "does not exist")
    _refused(lambda: export(lstm, tmp_path), tmp_path, "is a folder")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _refused(lambda: export(lstm, blocker / "m.onnx"), tmp_path, "does not exist")
    if sys.platform.startswith("linux") and Path("/proc").is_dir():
        # a folder nobody can create files in, not even root
        _refused(lambda: export(lstm, Path("/proc/rnnkit-export-test.onnx")), tmp_path,
                 "cannot write /proc/rnnkit-export-test.onnx")
        assert not Path("/proc/rnnkit-export-test.onnx").exists()


def test_run_folder_without_model(tmp_path):
    _refused(lambda: export_run(tmp_path / "nope"), tmp_path, "no such run folder")
    _refused(lambda: export_run(tmp_path), tmp_path, "has no config.json")
    (tmp_path / "config.json").write_text('{"kind": "memory_task", "task": "adding", '
                                          '"hidden_size": 4, "steps": 0}')
    _refused(lambda: export_run(tmp_path), tmp_path, "has no model.safetensors")
    (tmp_path / "config.json").write_text('{"format": "something-else"}')
    _refused(lambda: export_run(tmp_path), tmp_path, "is not an rnnkit run")
    _refused(lambda: export_run(tmp_path, "tflite"), tmp_path, "format must be one of onnx, pt2")
