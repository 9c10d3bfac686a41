"""The other layer kinds: Elman, the general recurrence, minGRU / minLSTM, and the three cells.

Exported at (T, B) = (4, 3) with states (and lengths where the layer takes them), checked against
eager at three other lengths and batch sizes, states and lengths given and omitted.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from export_helpers import EXPORT_B, EXPORT_T, SIZES, export_both
from torch import nn

import rnnkit


def _recurrent():
    # affine v, q, u and a σ ONNX has no RNN operator for
    return rnnkit.Recurrent(nn.Linear(3, 5), nn.Linear(5, 5, bias=False), nn.Linear(5, 2),
                            hidden_size=5, activation=F.softsign)


#: name -> (factory, state shape before B, takes lengths, batch_first)
KINDS = {
    "elman-relu-learned": (lambda: rnnkit.Elman(3, 5, 2, nonlinearity="relu", init_state="learned"),
                           (), True),
    "recurrent-softsign": (_recurrent, (), True),
    "mingru-2layer": (lambda: rnnkit.MinGRU(3, 5, num_layers=2), (2,), False),
    "minlstm-batch_first": (lambda: rnnkit.MinLSTM(3, 5, batch_first=True), (1,), False),
}


def inputs_for(layer, lead, with_lengths, T, B, states=True, lengths=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    bf = getattr(layer, "batch_first", False)
    inputs = {"input": torch.randn(*((B, T) if bf else (T, B)), 3, generator=g)}
    if states:
        inputs["h0"] = torch.randn(*lead, B, 5, generator=g)
    if with_lengths and lengths:
        inputs["lengths"] = torch.randint(1, T + 1, (B,), generator=g)
        inputs["lengths"][0] = T
    return inputs


@pytest.fixture(scope="module", params=list(KINDS))
def exported(request, folder):
    torch.manual_seed(0)
    make, lead, with_lengths = KINDS[request.param]
    layer = make().eval()
    if hasattr(layer, "h0"):
        with torch.no_grad():
            layer.h0.normal_()
    example = inputs_for(layer, lead, with_lengths, EXPORT_T, EXPORT_B)
    ex = export_both(layer, folder, example, name=request.param)
    return ex, lead, with_lengths, request.param


@pytest.mark.parametrize("T,B", SIZES)
def test_matches_eager_at_other_sizes(exported, T, B):
    ex, lead, with_lengths, name = exported
    for states in (True, False):
        for lengths in (True, False) if with_lengths else (False,):
            inputs = inputs_for(ex.model, lead, with_lengths, T, B, states, lengths, seed=T + B)
            full = states and (lengths or not with_lengths)
            ex.check(inputs, f"{name} T={T} B={B} states={states} lengths={lengths}", pt2=full)


@pytest.mark.parametrize("cls", [rnnkit.LSTMCell, rnnkit.GRUCell, rnnkit.RNNCell])
def test_cells(cls, folder):
    """A cell is one step: the batch axis is dynamic, the state optional."""
    torch.manual_seed(3)
    cell = cls(3, 5).eval()
    names = ("h", "c") if cls is rnnkit.LSTMCell else ("h",)

    def inputs(B, states=True):
        d = {"input": torch.randn(B, 3)}
        return d | ({n: torch.randn(B, 5) for n in names} if states else {})

    ex = export_both(cell, folder, inputs(EXPORT_B), name=cls.__name__)
    for B in (1, 2, 7):
        ex.check(inputs(B), f"{cls.__name__} B={B}")
        ex.check(inputs(B, states=False), f"{cls.__name__} B={B} no state", pt2=False)
