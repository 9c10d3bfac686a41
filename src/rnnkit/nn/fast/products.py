"""The fast path's matrix products: which library computes them, chosen per CPU at run time.

Each step of a recurrence multiplies a (B, H) state by the same ``W_hh`` (G, H), forward
(``h W_hh^T``) and backward (``da W_hh``). A plain GEMM re-packs the weight into its internal
layout at every call; the packed forms pack it once per sequence and reuse it for all T steps.
Three libraries can do it (``rnnkit.options(gemm=...)`` chooses; ``benchmarks/products.py``
times them at the benchmark shapes):

* ``"onednn"``: oneDNN's inner product (``torch.ops.mkldnn._linear_pointwise``) with the weight
  reordered once (``_reorder_linear_weight``). oneDNN generates its code for the CPU it runs on.
* ``"mkl_packed"``: MKL's packed-weight GEMM (``torch.ops.mkl._mkl_linear``, the path PyTorch's
  compiler uses for frozen linears). MKL picks its code by CPU vendor: on AMD CPUs it runs its
  AVX2 code even where the CPU has AVX-512, at about half oneDNN's rate there.
* ``"torch"``: ``torch.mm`` (ATen's BLAS: MKL's plain sgemm in PyTorch's x86 builds).

``"auto"`` (the default) is oneDNN wherever PyTorch has it, then MKL's packed GEMM, then
``torch.mm``; float64 (which neither oneDNN nor the packed GEMM take) and non-CPU tensors always
run ``torch.mm``. The products over whole sequences (the input projection ``x W_ih^T`` and its
gradients, ``dW_hh``) follow the same choice through `linear` and `weight_grad`.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from rnnkit.options import current

ONEDNN, MKL, TORCH = "onednn", "mkl_packed", "torch"


@functools.cache
def mkl_packed_available() -> bool:
    """Whether this PyTorch build has MKL's packed-weight GEMM ops (a property of the build)."""
    try:
        return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def onednn_available() -> bool:
    """Whether oneDNN's inner product runs here (built in, and not turned off by the user with
    ``torch.backends.mkldnn.enabled = False``: checked once, on a tiny product)."""
    try:
        if not (torch.backends.mkldnn.is_available() and torch._C._get_mkldnn_enabled()):
            return False
        w = torch.ops.mkldnn._reorder_linear_weight(torch.ones(3, 2), 2)
        y = torch.ops.mkldnn._linear_pointwise(torch.ones(2, 2), w, None, "none", [], "")
        return bool((y == 2).all())
    except (AttributeError, RuntimeError):
        return False


def backend(w: Tensor, batch: int | None = None, choice: str | None = None) -> str:
    """The library for products with weight ``w`` under ``choice`` (default: the scope's
    ``gemm``): ``onednn``, ``mkl_packed`` or ``torch``. ``batch``: rows per product, where it is
    known (MKL's packed GEMM wants more than one)."""
    choice = choice or current().gemm
    if w.device.type != "cpu" or w.dtype != torch.float32 or choice == TORCH:
        return TORCH
    mkl = mkl_packed_available() and (batch is None or batch > 1)
    if choice in ("auto", ONEDNN) and onednn_available():
        return ONEDNN
    if choice in ("auto", MKL) and mkl:
        return MKL
    return TORCH


def _onednn(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """``x w^T + b`` by oneDNN; ``w`` dense (G, K) or reordered."""
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


class Products:
    """The products with ``W_hh`` (G, H) for one call of T steps at batch size B, by ``backend``
    (default: `backend`'s choice; a single step is not worth a packing: ``torch.mm`` on a
    transposed view of ``W_hh``, no copy either).

    ``mm(h_in, out)``: ``h_in W_hh^T`` (B, G); ``addmm(bias, h_in, out)``: ``bias + h_in W_hh^T``
    into ``out``; ``back(da, base)``: ``da W_hh`` (B, H), plus ``base`` if given.

    The packed ``mm`` returns a new tensor (the ops have no ``out=``), so callers keep what
    ``mm`` returns rather than ``out``. Packing costs about one step's product per call; the
    backward's products use a second packing, of ``W_hh^T``, made on first use.
    """

    def __init__(self, w_hh: Tensor, batch: int, backend_: str | None = None,
                 steps: int | None = None) -> None:
        self.w_hh, self.batch, self._back = w_hh, batch, None
        self.backend = backend_ or (TORCH if steps == 1 else backend(w_hh, batch))
        self.packed = self.backend != TORCH  # kept for the bridges that ask
        if steps == 1 and not self.packed:
            self.w_t = w_hh.t()  # (H, G) view: one product does not pay for a copy
        elif self.backend == ONEDNN:
            self.fwd_w = torch.ops.mkldnn._reorder_linear_weight(w_hh, batch)
        elif self.backend == MKL:
            self.fwd_w = torch.ops.mkl._mkl_reorder_linear_weight(w_hh, batch)  # (B, H) -> (B, G)
        else:
            self.w_t = w_hh.t().contiguous()  # (H, G): one copy per call; faster than a view

    def mm(self, h_in: Tensor, out: Tensor) -> Tensor:
        if self.backend == ONEDNN:
            return _onednn(h_in, self.fwd_w)
        if self.backend == MKL:
            return torch.ops.mkl._mkl_linear(h_in, self.fwd_w, self.w_hh, None, self.batch)
        return torch.mm(h_in, self.w_t, out=out)

    def addmm(self, bias: Tensor, h_in: Tensor, out: Tensor) -> Tensor:
        if self.packed:
            return torch.add(bias, self.mm(h_in, out), out=out)
        return torch.addmm(bias, h_in, self.w_t, out=out)

    def back(self, da: Tensor, base: Tensor | None) -> Tensor:
        if self.backend == ONEDNN:
            out = _onednn(da, self.back_weights()[0])
        elif self.backend == MKL:
            out = torch.ops.mkl._mkl_linear(da, *self.back_weights(), None, self.batch)
        else:
            return torch.mm(da, self.w_hh) if base is None else torch.addmm(base, da, self.w_hh)
        return out if base is None else out.add_(base)

    def back_weights(self) -> tuple[Tensor, Tensor]:
        """(W_hh packed as the weight of the linear map ``da -> da W_hh``, its origin W_hh^T);
        made on first use, so a forward without backward never pays for the second packing."""
        if self._back is None:
            w_t = self.w_hh.t().contiguous()  # (H, G)
            if self.backend == ONEDNN:
                self._back = (torch.ops.mkldnn._reorder_linear_weight(w_t, self.batch), w_t)
            else:
                self._back = (torch.ops.mkl._mkl_reorder_linear_weight(w_t, self.batch), w_t)
        return self._back


class _OneDNNLinear(torch.autograd.Function):
    """``y = x W^T + b`` with its three products by oneDNN (x (N, K), W (G, K), b (G,) or None)."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _onednn(x, w, b)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        dy = dy.contiguous()
        dx = _onednn(dy, w.t().contiguous()) if ctx.needs_input_grad[0] else None  # (N, K)
        dw = db = None
        want_db = ctx.has_bias and ctx.needs_input_grad[2]
        if ctx.needs_input_grad[1]:  # (G, K), and (G,) from the same pass over dy
            dw, db = _onednn_weight_grad(dy, x, want_db)
        elif want_db:
            db = dy.sum(0)
        return dx, dw, db


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """``x W^T + b`` over the last axis (what ``F.linear`` computes), with its products (and, under
    autograd, its gradients') by the scope's ``gemm`` choice. x (..., K), w (G, K) -> (..., G)."""
    if (backend(w) != ONEDNN or x.dtype != w.dtype or x.device.type != "cpu"
            or torch.is_autocast_enabled("cpu") or x.shape[-1] == 0):
        return torch.nn.functional.linear(x, w, b)
    lead = x.shape[:-1]
    y = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]).contiguous(), w.contiguous(), b)
    return y.view(*lead, w.shape[0])


def weight_grad(da: Tensor, h: Tensor, backend_: str | None = None) -> Tensor:
    """``da^T h``: (N, G) and (N, H) -> (G, H), the gradient of a weight used as ``h W^T`` on N
    rows (``dW_hh`` over all steps at once), by the scope's ``gemm`` choice."""
    if (backend_ or backend(da)) != ONEDNN or h.dtype != da.dtype:
        return torch.mm(da.t(), h)
    return _onednn_weight_grad(da, h, False)[0]


def _onednn_weight_grad(da: Tensor, h: Tensor, bias: bool) -> tuple[Tensor, Tensor | None]:
    """(``da^T h`` (G, H), ``da`` summed over rows (G,) if ``bias``) by oneDNN's inner-product
    backward-weights primitive, which takes da (N, G) and h (N, H) as they are laid out. Not the
    forward inner product on ``da^T`` and ``h^T``: it wants the summed axis N innermost, and
    transposing da (N, G) into (G, N) costs more than the product at the benchmark shapes."""
    dw, db = torch.ops.aten.mkldnn_linear_backward_weights(
        da.contiguous().to_mkldnn(), h.contiguous().to_mkldnn(), da.new_empty(0), bias)
    return dw, (db if bias else None)
