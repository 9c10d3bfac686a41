"""The streaming graph, ``(x_t, state) -> (y_t, state)``, stepped T times equals one whole call."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import assert_close, export_both, run_onnx

import rnnkit

LAYERS = {
    "lstm-2layer": lambda: rnnkit.LSTM(3, 5, num_layers=2),  # ONNX's LSTM operator, T = 1
    "layernorm-gru-zoneout": lambda: rnnkit.LayerNormGRU(3, 5, zoneout=0.1),  # the step itself
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_stepping_equals_whole_sequence(name, folder):
    torch.manual_seed(0)
    layer = LAYERS[name]().eval()
    states = ("h0", "c0") if layer.mode == "LSTM" else ("h0",)
    example = {"x_t": torch.randn(3, 3)} | {s: torch.randn(layer.num_layers, 3, 5) for s in states}
    ex = export_both(layer, folder, example, streaming=True, name=f"{name}-step")
    for T, B in ((1, 1), (6, 2), (9, 5)):
        x = torch.randn(T, B, 3)
        with torch.no_grad():
            whole, state = layer(x)  # one call on the whole sequence, from the initial state
        whole_state = state if isinstance(state, tuple) else (state,)
        onnx_state, pt2_state, ys, ys_pt2 = None, None, [], []
        for t in range(T):
            feeds = {"x_t": x[t]}
            if onnx_state is not None:  # the first step leaves the state out: its default
                feeds |= dict(zip(states, onnx_state))
            y, *onnx_state = run_onnx(ex.onnx, feeds)
            onnx_state = [torch.from_numpy(s) for s in onnx_state]
            ys.append(y)
            if pt2_state is None:
                pt2_state = [torch.zeros(layer.num_layers, B, 5) for _ in states]
            y2, *pt2_state = ex.run_pt2(dict(zip(states, pt2_state)) | {"x_t": x[t]})
            ys_pt2.append(y2)
        ref = (whole, *whole_state)
        assert_close([np.stack(ys), *onnx_state], ref, f"{name} onnxruntime stepped T={T} B={B}")
        assert_close([torch.stack(ys_pt2), *pt2_state], ref, f"{name} torch.export stepped T={T}")
