"""torch.compile(fullgraph=True) on every layer kind, forward and backward, against eager.

Under torch.compile the layers take torch's scan op (rnnkit.nn.tracing): no graph break, no
fast-path buffers or locks in the graph, T symbolic (dynamic=True: a second length reuses the
graph). Compiling is slow, so all the kinds run inside ONE module compiled once with the
``aot_eager`` backend (Dynamo's capture and AOTAutograd's joint forward/backward graph, which is
where scan's autograd lives), and Inductor, which adds code generation and a failure of its
own (pytorch#195977, worked around in rnnkit.export.scan), compiles two small layers.
Oracle: the same modules in eager, outputs and every parameter's gradient.
"""

from __future__ import annotations

import pytest
import torch
from nn_zoo import ALL, LAYERS, assert_close, leaves

import rnnkit

B = 3


class Zoo(torch.nn.Module):
    """All the kinds side by side: forward(T) runs each on its own input of length T."""

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


def compare(zoo, compiled, T):
    inputs = [k.make(T, B) for k in zoo.kinds]
    got, got_grads = loss_and_grads(compiled, zoo, inputs)
    want, want_grads = loss_and_grads(zoo, zoo, inputs)
    for kind, g, w in zip(zoo.kinds, got, want):
        assert_close(g, w, rtol=1e-5, what=f"{kind.name} T={T}")
    assert got_grads.keys() == want_grads.keys()
    for name in want_grads:
        assert_close(got_grads[name], want_grads[name], rtol=1e-4, what=f"d/d {name} T={T}")


def test_every_kind_compiles_with_fullgraph_and_matches_eager():
    torch._dynamo.reset()
    zoo = Zoo(ALL)
    compiled = torch.compile(zoo, fullgraph=True, dynamic=True, backend="aot_eager")
    for T in (5, 8):  # the second length runs the same graph
        compare(zoo, compiled, T)


@pytest.mark.parametrize("cls", [rnnkit.GRU, rnnkit.LSTM])
def test_inductor_forward_and_backward(cls):
    """tanh and sigmoid save their outputs for the backward; inductor refuses a scan whose carry
    is such an output unless it is copied (pytorch#195977)."""
    torch._dynamo.reset()
    zoo = Zoo([k for k in LAYERS if k.name.startswith(cls.__name__ + "-")])
    compare(zoo, torch.compile(zoo, fullgraph=True, dynamic=True), 5)


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
    x = torch.randn(5, B, 3)

    def run(x):
        return [m(x)[0] for m in layers]

    outs = torch.compile(run, fullgraph=True, dynamic=True, backend="aot_eager")(x)
    sum(o.square().sum() for o in outs).backward()
    assert [o.shape for o in outs] == [torch.Size([5, B, 4])] * 3
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layers.parameters())
