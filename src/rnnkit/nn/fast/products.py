"""The per-step matrix products with ``W_hh``, on MKL's packed-weight GEMM where it applies.

Each step of a recurrence multiplies a (B, H) state by the same ``W_hh`` (G, H). A plain GEMM
re-packs the weight into its internal layout at every call; MKL's packed GEMM
(``torch.ops.mkl._mkl_linear``, the path PyTorch's own compiler uses for linear layers) packs it
once per sequence and reuses it for all T steps. ``benchmarks/custom_cells.py`` times the same layer
with ``rnnkit.options(packed_gemm=False)`` (its "torch.mm per step" row) to show what it is worth.
It applies on CPU, in float32, with B > 1, where this PyTorch build has MKL; elsewhere the
products are ``torch.mm``.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


@functools.cache
def mkl_packed_available() -> bool:
    """Whether this PyTorch build has MKL's packed-weight GEMM ops (a property of the build)."""
    try:
        return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")
    except (AttributeError, RuntimeError):
        return False


class Products:
    """The products with ``W_hh`` (G, H) for one call, at batch size B.

    ``mm(h_in, out)``: ``h_in W_hh^T`` (B, G); ``addmm(bias, h_in, out)``: ``bias + h_in W_hh^T``
    into ``out``; ``back(da, base)``: ``da W_hh`` (B, H), plus ``base`` if given.

    The packed ``mm`` returns a new tensor (the op has no ``out=``), so callers keep what ``mm``
    returns rather than ``out``. Packing costs about one step's product per call; the backward's
    products use a second packing, of ``W_hh^T``, made on first use.
    """

    def __init__(self, w_hh: Tensor, batch: int, packed_gemm: bool = True) -> None:
        self.w_hh, self.batch, self._back = w_hh, batch, None
        self.packed = (packed_gemm and w_hh.device.type == "cpu" and w_hh.dtype == torch.float32
                       and batch > 1 and mkl_packed_available())
        if self.packed:
            self.fwd_w = torch.ops.mkl._mkl_reorder_linear_weight(w_hh, batch)  # (B, H) -> (B, G)
        else:
            self.w_t = w_hh.t().contiguous()  # (H, G): one copy per call; faster than a view

    def mm(self, h_in: Tensor, out: Tensor) -> Tensor:
        if self.packed:
            return torch.ops.mkl._mkl_linear(h_in, self.fwd_w, self.w_hh, None, self.batch)
        return torch.mm(h_in, self.w_t, out=out)

    def addmm(self, bias: Tensor, h_in: Tensor, out: Tensor) -> Tensor:
        if self.packed:
            return torch.add(bias, self.mm(h_in, out), out=out)
        return torch.addmm(bias, h_in, self.w_t, out=out)

    def back(self, da: Tensor, base: Tensor | None) -> Tensor:
        if self.packed:
            out = torch.ops.mkl._mkl_linear(da, *self.back_weights(), None, self.batch)
            return out if base is None else out.add_(base)
        return torch.mm(da, self.w_hh) if base is None else torch.addmm(base, da, self.w_hh)

    def back_weights(self) -> tuple[Tensor, Tensor]:
        """(W_hh packed as the weight of the linear map ``da -> da W_hh``, its origin W_hh^T);
        made on first use, so a forward without backward never pays for the second packing."""
        if self._back is None:
            w_t = self.w_hh.t().contiguous()  # (H, G)
            self._back = (torch.ops.mkl._mkl_reorder_linear_weight(w_t, self.batch), w_t)
        return self._back
