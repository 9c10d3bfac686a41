"""The bridge to ``elman.cpp``: the Elman cell ``h' = σ(gi + a)`` (σ = tanh or relu) whose time
loop runs in C++.

The same mathematics and driver interface as the eager kernel of `rnnkit.nn.fast.elman`,
and the same ops step for step (``gi + h_in W_hh^T`` by one ``addmm``, or MKL's packed product
then the sum; σ in place); the time loop is ``one_state_loop.h``'s, which keeps the driver's
order of products, masks and blends. The relu cell is the eager kernel bit for bit; the tanh
cell differs only in tanh itself (one ``exp``, see ``vec_ops.h``). Backward reads ``σ'`` off the
new states ``h'`` the driver already holds, so forward keeps nothing else, with or without
``save``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.nn.fast.compiled import one_state
from rnnkit.nn.fast.compiled.build import load
from rnnkit.nn.fast.workspace import Owner


class CompiledElmanKernel(Owner):
    """params: () (both biases are folded into gi)."""

    def __init__(self, gi: Tensor, params: tuple, save: bool = True, *, relu: bool = False):
        self.ext, self.gi, self.relu, self.save = load(), gi, relu, save

    def forward_all(self, reverse, S, prod, hidden_mask, keeps, NEW):
        """The forward over all steps; arguments as `CompiledGRUKernel`'s."""
        ext = self.ext
        ext.elman.forward_loop(self.relu, one_state.products(ext, prod, False),
                               one_state.masks(ext, hidden_mask, keeps),
                               one_state.states(ext, S, NEW), self.gi, reverse, self.save)

    def prepare_backward(self, prev_all, new_all):
        (self.h_new,) = new_all  # (T, B, H) each step's new state before any blend
        self.da = torch.empty_like(self.h_new)  # (T, B, H) the gradient of gi (and of a)

    def backward_all(self, reverse, dy, d_final, prod, hidden_mask, keeps):
        """The backward over all steps; returns [the gradient on h0]."""
        ext = self.ext
        return [ext.elman.backward_loop(self.relu, one_state.products(ext, prod, True),
                                        one_state.masks(ext, hidden_mask, keeps), self.h_new,
                                        self.da, dy, d_final[0], reverse)]

    def finish(self):
        return self.da, self.da, ()


def tanh_kernel(gi: Tensor, params: tuple, save: bool = True) -> CompiledElmanKernel:
    """The Elman cell with tanh (cell ``rnn_tanh``)."""
    return CompiledElmanKernel(gi, params, save, relu=False)


def relu_kernel(gi: Tensor, params: tuple, save: bool = True) -> CompiledElmanKernel:
    """The Elman cell with relu (cell ``rnn_relu``)."""
    return CompiledElmanKernel(gi, params, save, relu=True)
