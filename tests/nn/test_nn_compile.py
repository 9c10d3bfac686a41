"""torch.compile(fullgraph=True) on every layer kind, forward and backward, against eager.

Without autograd the layers take torch's scan op under torch.compile (rnnkit.nn.paths): no graph
break, nothing of the fast path in the graph, T and B symbolic, so one graph serves every size.
With autograd they take the readable loop, which Dynamo unrolls (one graph per length), because
Inductor miscompiles scan's backward in torch 2.13 (see rnnkit.nn.paths.traced_path).
Compiling is slow, so all the kinds run inside ONE module compiled once: for inference with the
``eager`` backend (Dynamo's full-graph capture; AOTAutograd's tracing of the same scan is what
tests/nn/test_nn_export.py runs), for gradients with ``aot_eager`` (AOTAutograd's joint
forward/backward graph); Inductor compiles the recurrent layers whose gradients it got wrong
through scan (slow).
Oracle: the same modules in eager, outputs and every parameter's gradient.
"""

from __future__ import annotations

import pytest
import torch
from nn_zoo import ALL, LAYERS, assert_close, leaves

import rnnkit

SIZES = [(5, 3), (8, 2), (3, 4)]  # (T, B): the first compiles, the others reuse the graph


class Zoo(torch.nn.Module):
    """All the kinds side by side: forward(inputs) runs each on its own (args, kwargs)."""

    def __init__(self, kinds):
        super().__init__()
        self.kinds = kinds
        self.members = torch.nn.ModuleList(k.build() for k in kinds)

    def forward(self, inputs):
        return [m(*args, **kwargs) for m, (args, kwargs) in zip(self.members, inputs)]


def loss_and_grads(fn, zoo, inputs):
    zoo.zero_grad()
    outs = fn(inputs)
    loss = sum(o.float().square().sum() for o in leaves(outs) if o.is_floating_point())
    loss.backward()
    return outs, {n: p.grad.clone() for n, p in zoo.named_parameters() if p.grad is not None}


def compare_grads(zoo, compiled, T, B):
    inputs = [k.make(T, B) for k in zoo.kinds]
    got, got_grads = loss_and_grads(compiled, zoo, inputs)
    want, want_grads = loss_and_grads(zoo, zoo, inputs)
    for kind, g, w in zip(zoo.kinds, got, want):
        assert_close(g, w, rtol=1e-5, what=f"{kind.name} T={T}")
    assert got_grads.keys() == want_grads.keys()
    for name in want_grads:
        assert_close(got_grads[name], want_grads[name], rtol=1e-4, what=f"d/d {name} T={T}")


def test_inference_one_graph_for_every_length_and_batch():
    """no_grad: the scan path at three sizes, one graph for all (a recompile would count).
    T and B are marked dynamic: torch otherwise compiles a module's first call for its sizes
    even with dynamic=True (torch.nn's own layers too)."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    zoo = Zoo(ALL)
    compiled = torch.compile(zoo, fullgraph=True, dynamic=True, backend="eager")
    with torch.no_grad():
        for T, B in SIZES:
            inputs = [k.make(T, B) for k in zoo.kinds]
            for t in leaves(inputs):  # every axis but the features
                for d in range(t.dim() - (1 if t.is_floating_point() else 0)):
                    torch._dynamo.maybe_mark_dynamic(t, d)
            for kind, g, w in zip(zoo.kinds, compiled(inputs), zoo(inputs)):
                assert_close(g, w, rtol=1e-5, what=f"{kind.name} {T}x{B}")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_every_kind_compiles_with_gradients_equal_to_eager():
    torch._dynamo.reset()
    zoo = Zoo(ALL)
    compiled = torch.compile(zoo, fullgraph=True, dynamic=True, backend="aot_eager")
    compare_grads(zoo, compiled, 5, 3)


@pytest.mark.slow  # about 2 minutes; the aot_eager test above covers every kind in the fast run
@pytest.mark.parametrize("prefix", ["GRU-", "LSTM-", "RNN-"])
def test_inductor_forward_and_backward(prefix):
    """The configurations whose gradients Inductor got wrong through scan (GRU's b_hh,
    bidirectional W_hh) compiled by Inductor itself, at two lengths."""
    torch._dynamo.reset()
    zoo = Zoo([k for k in LAYERS if k.name.startswith(prefix)])
    compiled = torch.compile(zoo, fullgraph=True, dynamic=True)
    for T, B in SIZES[:2]:
        compare_grads(zoo, compiled, T, B)


def test_training_mode_compiles_with_its_dropouts():
    """In training the dropout masks are random, so only the shapes and a finite gradient are
    compared; the point is that dropout, zoneout, DropConnect and random initial states trace."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    layers = torch.nn.ModuleList([
        rnnkit.FusedLSTM(3, 4, num_layers=2, dropout=0.3, zoneout=0.2, weight_dropout=0.2,
                         recurrent_dropout=0.2),
        rnnkit.GRU(3, 4, init_state="random"),
        rnnkit.LayerNormGRU(3, 4, zoneout=0.1),
    ]).train()
    x = torch.randn(5, 3, 3)

    def run(x):
        return [m(x)[0] for m in layers]

    outs = torch.compile(run, fullgraph=True, dynamic=True, backend="aot_eager")(x)
    sum(o.square().sum() for o in outs).backward()
    assert [o.shape for o in outs] == [torch.Size([5, 3, 4])] * 3
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layers.parameters())


def test_nothing_of_the_fast_path_enters_a_graph():
    """With the C++ loop chosen for eager, a compiled graph still holds only ATen ops and the
    scan: no autograd Function of the fast path, no call into the C++ extension."""
    torch._dynamo.reset()
    seen = []

    def record(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    torch.manual_seed(0)
    layers = torch.nn.ModuleList([rnnkit.FusedLSTM(3, 4), rnnkit.LayerNormGRU(3, 4),
                                  rnnkit.FusedRNN(3, 4)]).eval()
    x = torch.randn(5, 2, 3)
    with rnnkit.options(compiled=True), torch.no_grad():
        want = [m(x)[0] for m in layers]
        got = torch.compile(lambda x: [m(x)[0] for m in layers], fullgraph=True,
                            backend=record)(x)
    for g, w in zip(got, want):
        assert_close(g, w)
    assert any("scan" in t for t in seen)
    assert not [t for t in seen if "rnnkit" in t or "autograd_function" in t or "Recurrence" in t]
