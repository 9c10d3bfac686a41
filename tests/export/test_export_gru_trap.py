"""The GRU trap: ONNX's GRU computes torch's equation only with ``linear_before_reset=1``.

torch.nn.GRU applies the reset gate after the recurrent product, ``n = tanh(W_in x + b_in +
r ⊙ (W_hn h + b_hn))``; ONNX's default (``linear_before_reset=0``) applies it before,
``tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)``, a different function. torch's dynamo exporter
wrote the default (pytorch#189225, onnxscript#2852, up to 14% off). These tests record what the
installed torch / onnxscript do, so they fail when that behaviour changes.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import torch
from export_helpers import assert_close, run_onnx, session

import rnnkit
from rnnkit.export import to_onnx


def _lbr(model: onnx.ModelProto) -> list[int]:
    return [a.i for n in model.graph.node if n.op_type == "GRU" for a in n.attribute
            if a.name == "linear_before_reset"]


def test_torch_nn_own_export_of_gru(tmp_path):
    """Observed with torch 2.13 / onnxscript 0.7: torch.onnx.export(dynamo=True) now writes
    linear_before_reset=1 (the upstream fix is in), but asked for a dynamic time axis it still
    writes the traced length into the graph, which then fails at any other length."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 8).eval()
    x = torch.randn(5, 2, 3)
    dims = ({0: torch.export.Dim("T"), 1: torch.export.Dim("B")},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(gru, (x,), dynamo=True, verbose=False, dynamic_shapes=dims)
    path = tmp_path / "torch_gru.onnx"
    program.save(str(path))
    model = onnx.load(path)
    assert _lbr(model) == [1], "torch's exporter changed its GRU reset convention"
    sess = session(path, log_level=4)  # the failure below is expected: keep onnxruntime quiet
    name = sess.get_inputs()[0].name
    with torch.no_grad():
        assert_close(sess.run(None, {name: x.numpy()})[:1], gru(x)[:1], "torch.onnx GRU at T=5")
    other = torch.randn(9, 2, 3)
    try:
        sess.run(None, {name: other.numpy()})
    except Exception as err:  # onnxruntime's error: a shape holds the traced length 5
        assert "{5," in str(err) or "Expected: 5" in str(err), str(err)
    else:
        raise AssertionError("torch.onnx's GRU now runs at another length: time axis is dynamic")


def test_ours_sets_linear_before_reset_and_it_matters(tmp_path):
    """Ours writes linear_before_reset=1 and matches eager; the same file with 0 does not."""
    torch.manual_seed(1)
    gru = rnnkit.GRU(3, 8, num_layers=2, bidirectional=True).eval()
    path = to_onnx(gru, tmp_path / "gru.onnx")
    model = onnx.load(path)
    assert _lbr(model) == [1, 1]
    x = torch.randn(9, 4, 3)
    with torch.no_grad():
        ref = gru(x)
    got = run_onnx(session(path), {"input": x})
    assert_close(got[:1], ref[:1], "GRU with linear_before_reset=1")
    for node in model.graph.node:  # the trap: ONNX's default reset convention
        for a in node.attribute:
            if a.name == "linear_before_reset":
                a.i = 0
    trapped = tmp_path / "gru_lbr0.onnx"
    onnx.save(model, trapped)
    wrong = run_onnx(session(trapped), {"input": x})[0]
    rel = np.abs(wrong - ref[0].numpy()).max() / np.abs(ref[0].numpy()).max()
    assert rel > 1e-2, f"linear_before_reset=0 should be far off, got relative error {rel:.2g}"
