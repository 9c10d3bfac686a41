"""RNN / LSTM / GRU and their Fused* and LayerNorm* variants, exported with dynamic batch and time.

Each configuration is exported once to ONNX and to a torch.export program at (T, B) = (4, 3), with
initial states and lengths, then checked against the eager layer at three other lengths and batch
sizes, with states and lengths given and (ONNX: optional inputs) omitted.
"""

from __future__ import annotations

import onnx
import pytest
import torch
from export_helpers import EXPORT_B, EXPORT_T, SIZES, assert_close, export_both, run_onnx, session

import rnnkit
from rnnkit.export import to_onnx
from rnnkit.export.programs import call_layer

#: name -> (layer factory, batch_first, ONNX operator it must use, or "Scan")
CONFIGS = {
    "lstm-2layer-bidir": (lambda: rnnkit.LSTM(3, 5, num_layers=2, bidirectional=True), "LSTM"),
    "gru-2layer-bidir-batch_first": (
        lambda: rnnkit.GRU(3, 5, num_layers=2, bidirectional=True, batch_first=True), "GRU"),
    "rnn-relu-nobias-bidir": (
        lambda: rnnkit.RNN(3, 5, nonlinearity="relu", bias=False, bidirectional=True), "RNN"),
    "lstm-proj": (lambda: rnnkit.LSTM(3, 6, proj_size=4), "Scan"),
    "layernorm-lstm-bidir-zoneout": (
        lambda: rnnkit.LayerNormLSTM(3, 5, bidirectional=True, zoneout=0.1), "Scan"),
    "layernorm-gru-nobias-batch_first": (
        lambda: rnnkit.LayerNormGRU(3, 5, bias=False, batch_first=True), "Scan"),
    # recurrent dropout is off in eval; zoneout is not (it keeps 1 - p of each update)
    "fused-gru-learned-zoneout": (
        lambda: rnnkit.FusedGRU(3, 5, zoneout=0.2, recurrent_dropout=0.3, init_state="learned"),
        "Scan"),
}


def make_inputs(layer, T: int, B: int, states: bool = True, lengths: bool = True, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, 3, generator=g) if layer.batch_first else torch.randn(T, B, 3, generator=g)
    inputs = {"input": x}
    if states:
        rows = layer.num_layers * (2 if layer.bidirectional else 1)
        inputs["h0"] = torch.randn(rows, B, layer.proj_size or layer.hidden_size, generator=g)
        if layer.mode == "LSTM":
            inputs["c0"] = torch.randn(rows, B, layer.hidden_size, generator=g)
    if lengths:
        inputs["lengths"] = torch.randint(1, T + 1, (B,), generator=g)
        inputs["lengths"][0] = T  # the longest sequence fills the time axis
    return inputs


@pytest.fixture(scope="module", params=list(CONFIGS))
def exported(request, folder):
    torch.manual_seed(0)
    make, op = CONFIGS[request.param]
    layer = make().eval()
    for name, p in layer.named_parameters():  # learned states and LN gains away from 0 and 1
        if name in ("h0", "c0") or "ln_" in name:
            with torch.no_grad():
                p.add_(0.3 * torch.randn_like(p))
    example = make_inputs(layer, EXPORT_T, EXPORT_B)
    return export_both(layer, folder, example, name=request.param), op, request.param


@pytest.mark.parametrize("T,B", SIZES)
def test_matches_eager_at_other_sizes(exported, T, B):
    ex, _, name = exported
    for states in (True, False):
        for lengths in (True, False):
            inputs = make_inputs(ex.model, T, B, states, lengths, seed=T * 10 + B)
            # the program traced with states and lengths takes them; ONNX makes them optional
            ex.check(inputs, f"{name} T={T} B={B} states={states} lengths={lengths}",
                     pt2=states and lengths)


def test_uses_onnx_own_operator_or_a_scan(exported, folder):
    ex, op, name = exported
    graph = onnx.load(folder / f"{name}.onnx").graph
    ops = {n.op_type for n in graph.node}
    assert op in ops, f"{name}: expected ONNX {op}, graph has {sorted(ops)}"
    assert "Scan" not in ops or op == "Scan"  # plain cells never fall back to a loop
    inputs = [i.name for i in graph.input]
    defaults = {t.name for t in graph.initializer}
    for optional in ("h0", "c0", "lengths"):  # optional inputs carry their default
        assert optional not in inputs or optional in defaults


def test_pt2_without_states_or_lengths(folder):
    """A program traced without the optional inputs uses the layer's initial state, full lengths."""
    torch.manual_seed(1)
    layer = rnnkit.LSTM(3, 5, num_layers=2, bidirectional=True).eval()
    path = rnnkit.export.to_pt2(layer, folder / "plain.pt2",
                                {"input": torch.randn(EXPORT_T, EXPORT_B, 3)})
    program = torch.export.load(path).module()
    for T, B in SIZES:
        x = torch.randn(T, B, 3)
        with torch.no_grad():
            want = layer(x)
            got = program(x)
        torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[1:], want[1], rtol=1e-5, atol=1e-6)


def test_torch_nn_layers_export_too(folder):
    """torch.nn.LSTM has the same parameters: rnnkit exports it with a dynamic time axis (and
    lengths, which mean what packing means)."""
    torch.manual_seed(2)
    layer = torch.nn.LSTM(3, 5, batch_first=True).eval()
    sess = session(to_onnx(layer, folder / "torch_lstm.onnx"))
    for T, B in SIZES:
        x = torch.randn(B, T, 3)
        lengths = torch.randint(1, T + 1, (B,))
        lengths[0] = T
        for inputs in ({"input": x}, {"input": x, "lengths": lengths}):
            with torch.no_grad():
                ref = call_layer(layer, x, None, inputs.get("lengths"))
            assert_close(run_onnx(sess, inputs), (ref[0], *ref[1]), f"torch.nn.LSTM T={T} B={B}")
