"""Small tensor operations the fast path's kernels share: layer norm and the activations' slopes.

Every function here runs one ATen kernel where the plain formula would run several: the kernels
work on (T, B, G) arrays far larger than the cache, so their time is the number of passes over
memory.
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-5  # layer-norm epsilon, as torch.nn.LayerNorm


def layer_norm(a: Tensor, eps: float, weight: Tensor | None = None, bias: Tensor | None = None):
    """``weight ⊙ (a - mean) rstd + bias`` over the last axis; returns (that, mean, rstd)."""
    return torch.native_layer_norm(a, a.shape[-1:], weight, bias, eps)


def layer_norm_backward(dy: Tensor, a: Tensor, mean: Tensor, rstd: Tensor,
                        weight: Tensor | None, grad_weight: bool = False,
                        bias: Tensor | None = None):
    """Gradients through ``y = weight ⊙ â + bias``, ``â = (a - mean) rstd`` over the last axis:

        d = dy ⊙ weight;   da = rstd (d - mean(d) - â mean(d ⊙ â));
        d weight = Σ_rows dy ⊙ â;   d bias = Σ_rows dy

    computed by ATen's layer-norm backward kernel (one pass instead of six small ops).
    Returns (da, d weight if ``grad_weight`` else None, d bias if ``bias`` is given else None).
    """
    return torch.ops.aten.native_layer_norm_backward(
        dy, a, a.shape[-1:], mean, rstd, weight, bias, [True, grad_weight, bias is not None]
    )


def sigmoid_slope(s: Tensor, out: Tensor) -> Tensor:
    """σ'(x) = s - s^2 from s = σ(x), into ``out``, in one ``addcmul`` pass (not mul, neg, add)."""
    return torch.addcmul(s, s, s, value=-1, out=out)


def tanh_slope(y: Tensor, out: Tensor) -> Tensor:
    """tanh'(x) = 1 - y^2 from y = tanh(x), into ``out``, in one pass (a 0-dim 1 broadcasts)."""
    return torch.addcmul(y.new_ones(()), y, y, value=-1, out=out)


def per_step(buf: Tensor, T: int) -> list[Tensor] | tuple[Tensor, ...]:
    """Per-step views of a (T or 1, ...) buffer: with one row, step t always gets row 0.

    One ``unbind`` up front: a view from it is cheaper than indexing the buffer at every step.
    """
    return buf.unbind(0) if buf.shape[0] == T else [buf[0]] * T


class InputLayerNorm:
    """Put in front of a layer-norm kernel class: the input side's layer norm for all steps at
    once, ``gi = γ_ih LN(x) + shift`` (one ATen layer norm) before the loop, and its backward
    after, in ``finish``. ``x = W_ih x_t`` (T, B, G); params: the kernel's own, then (γ_ih,
    shift); ``shift`` may be None (``bias=False``). The eager counterpart of the compiled loops,
    which do this layer norm row by row inside each step."""

    def __init__(self, x: Tensor, params: tuple, save: bool = True, eps: float = EPS) -> None:
        *own, gamma_ih, shift = params
        gi, self.mean_x, self.rstd_x = layer_norm(x, eps, gamma_ih, shift)  # (T, B, G), (T, B, 1)
        super().__init__(gi, tuple(own), save, eps)
        self.x, self.gamma_ih, self.shift = x, gamma_ih, shift

    def finish(self):
        dgi, da, p_grads = super().finish()
        dx, d_gamma_ih, d_shift = layer_norm_backward(dgi, self.x, self.mean_x, self.rstd_x,
                                                      self.gamma_ih, True, self.shift)
        return dx, da, (*p_grads, d_gamma_ih, d_shift)
