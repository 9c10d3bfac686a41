"""The Elman cell's kernel for the fast path: ``h' = σ(gi + a)``, σ = tanh or relu.

``a = W_hh h_in`` is the recurrent pre-activation; ``gi = W_ih x + b_ih + b_hh`` comes in for all
steps. The kernel interface (``forward_step``, ``prepare_backward``, ``backward_step``,
``finish``) is described in `rnnkit.nn.fast.driver`. Shapes: T time, B batch, H hidden.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.nn.fast.ops import tanh_slope
from rnnkit.nn.fast.workspace import Owner


class ElmanKernel(Owner):
    def __init__(self, gi: Tensor, params: tuple, save: bool = True, *, relu: bool = False):
        self.gi, self.relu = gi.unbind(0), relu

    def forward_step(self, t, h_in, prod, prev, new):
        h_new = prod.addmm(self.gi[t], h_in, new[0])  # (B, H)
        h_new.relu_() if self.relu else h_new.tanh_()

    def prepare_backward(self, prev_all, new_all):
        (h,) = new_all  # (T, B, H)
        deriv = (h > 0).to(h.dtype) if self.relu else tanh_slope(h, torch.empty_like(h))
        self.deriv = deriv.unbind(0)  # σ'(pre) from σ's output
        self.da = torch.empty_like(h)
        self.da_t = self.da.unbind(0)

    def backward_step(self, t, d_new):
        return torch.mul(d_new[0], self.deriv[t], out=self.da_t[t]), (None,)

    def finish(self):
        return self.da, self.da, ()


def tanh_kernel(gi: Tensor, params: tuple, save: bool = True) -> ElmanKernel:
    return ElmanKernel(gi, params, save, relu=False)


def relu_kernel(gi: Tensor, params: tuple, save: bool = True) -> ElmanKernel:
    return ElmanKernel(gi, params, save, relu=True)
