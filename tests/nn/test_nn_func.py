"""torch.func on every layer: grad against autograd, vmap against a Python loop over the batch.

Under a torch.func transform the layers take the readable loop (rnnkit.nn.tracing explains why:
torch's scan, PyTorch's fused RNN kernels and the fast path's autograd Function do not compose
with the transforms in torch 2.13). The oracles are the layer's own eager call: autograd's
gradient of the same loss, and the layer run on one sequence at a time.
"""

from __future__ import annotations

import pytest
import torch
from nn_zoo import ALL, LAYERS, assert_close, leaves
from torch.func import functional_call, grad, vmap

import rnnkit

T, B = 5, 3


def loss_of(module, args, kwargs):
    def loss(params):
        out = functional_call(module, params, args, kwargs)
        return sum(o.float().square().sum() for o in leaves(out) if o.is_floating_point())
    return loss


@pytest.mark.parametrize("kind", ALL, ids=[k.name for k in ALL])
def test_func_grad_equals_autograd(kind):
    module = kind.build()
    args, kwargs = kind.make(T, B)
    params = {n: p.detach() for n, p in module.named_parameters()}
    got = grad(loss_of(module, args, kwargs))(params)
    want = torch.autograd.grad(loss_of(module, args, kwargs)(dict(module.named_parameters())),
                               list(module.parameters()))
    for (name, g), w in zip(got.items(), want):
        assert_close(g, w, rtol=1e-5, what=name)


@pytest.mark.parametrize("kind", LAYERS, ids=[k.name for k in LAYERS])
def test_vmap_equals_a_loop_over_the_batch(kind):
    """vmap over the batch axis: each call sees one unbatched sequence (or one cell input)."""
    module = kind.build()
    args, kwargs = kind.make(T, B)
    x, rest = args[0], args[1:]
    if kwargs.get("lengths") is not None:  # lengths go with their sequence
        lengths = kwargs["lengths"]

        def one(x_b, n_b):
            return module(x_b, None, n_b.reshape(1))  # lengths is the third argument in place

        got = vmap(one, in_dims=(kind.batch_axis, 0))(x, lengths)
        loop = [one(x.select(kind.batch_axis, b), lengths[b]) for b in range(B)]
    else:
        def one(x_b, *state_b):
            state = None if not state_b else (state_b if len(state_b) == 2 else state_b[0])
            return module(x_b) if state is None else module(x_b, state)

        states = leaves(rest)
        got = vmap(one, in_dims=(kind.batch_axis, *([0] * len(states))))(x, *states)
        loop = [one(x.select(kind.batch_axis, b), *(s[b] for s in states)) for b in range(B)]
    want = [torch.stack([leaves(r)[k] for r in loop]) for k in range(len(leaves(loop[0])))]
    # vmap puts the batch first; move it where the layer keeps it
    got = [g.movedim(0, kind.batch_axis) if g.dim() > 1 and kind.batch_axis else g
           for g in leaves(got)]
    want = [w.movedim(0, kind.batch_axis) if w.dim() > 1 and kind.batch_axis else w
            for w in want]
    assert_close(got, want, rtol=1e-5, what=kind.name)


def test_grad_with_the_compiled_loop_chosen_for_eager():
    """rnnkit.options(compiled=True) picks the C++ loop in eager; under torch.func the layers
    still take the readable loop (the extension's autograd Function has no functorch rule)."""
    torch.manual_seed(0)
    module = rnnkit.FusedGRU(3, 4, num_layers=2).eval()
    args, kwargs = (torch.randn(T, B, 3),), {}
    with rnnkit.options(compiled=True):
        got = grad(loss_of(module, args, kwargs))({n: p.detach() for n, p in module.named_parameters()})
        want = torch.autograd.grad(loss_of(module, args, kwargs)(dict(module.named_parameters())),
                                   list(module.parameters()))
    for (name, g), w in zip(got.items(), want):
        assert_close(g, w, rtol=1e-5, what=name)
