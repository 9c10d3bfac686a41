"""Is a tracer or a function transform watching this call? The question every path choice asks first.

rnnkit's eager paths are fast because they do things no graph can hold: PyTorch's fused RNN
kernels (``torch._VF``, which decompose to ``aten.mkldnn_rnn_layer`` and fail under
``torch.compile`` with autograd), the fast path's autograd Function (buffers from a locked pool,
in-place writes, MKL's packed GEMM), Python loops over T (a tracer unrolls them into exactly the
traced number of steps). So while one of these watches, the layers take another path:

* ``"compile"``: ``torch.compile`` (``torch.compiler.is_compiling()``), ``torch.export`` in
  either mode (``torch.compiler.is_exporting()``), or tensors that are fake (``make_fx`` and
  friends). The layers run their time loop as torch's ``scan`` op (`rnnkit.export.scan`),
  one graph node whose body is traced once, so T stays symbolic; ``torch.compile`` with
  autograd on gets the readable loop instead (`rnnkit.nn.paths.traced_path` says why).
* ``"func"``: a ``torch.func`` transform (``grad``, ``vmap``, ``jacrev``...). ``scan`` does not
  compose with them in torch 2.13 (grad over it fails in its meta conversion, vmap in its body),
  ``aten::lstm`` has no vmap batching rule and an autograd Function without ``setup_context``
  is refused, so the layers run the readable loop (`rnnkit.nn.loop.scan`), plain ATen ops
  that every transform knows. ``torch._C._are_functorch_transforms_active()`` is the test
  ``torch.autograd.Function.apply`` itself uses to decide the same question (it is declared in
  ``torch/_C/__init__.pyi``).
* ``"jit"``: ``torch.jit.trace``, also what the TorchScript-based ONNX exporter
  (``torch.onnx.export(..., dynamo=False)``) runs. PyTorch's RNN kernels trace as one node for
  any length; a Python loop is unrolled (see `rnnkit.nn.paths.choose_path`).
"""

from __future__ import annotations

import torch
from torch import Tensor

COMPILE, FUNC, JIT = "compile", "func", "jit"


def tracing(x: Tensor | None = None) -> str | None:
    """``"compile"``, ``"func"``, ``"jit"`` or None (plain eager) for a call on input ``x``."""
    if torch._C._are_functorch_transforms_active():
        return FUNC
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or _is_fake(x):
        return COMPILE
    if torch.jit.is_tracing():
        return JIT
    return None


def exporting() -> bool:
    """Whether ``torch.export`` is tracing this call (``torch.compiler.is_exporting()``, read
    through its flag: Dynamo refuses to trace the function itself in torch 2.13)."""
    return bool(getattr(torch.compiler, "_is_exporting_flag", False))


def _is_fake(x) -> bool:
    if not isinstance(x, Tensor):
        return False
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(x, FakeTensor)


def values_readable(t: Tensor) -> bool:
    """Whether Python may read ``t``'s values (``int(t.min())``) in this call: not while a graph
    is being traced (the value would be fixed into it) nor when a ``torch.func`` transform wraps
    ``t`` (a tensor batched by ``vmap`` has no single value)."""
    mode = tracing(t)
    if mode in (COMPILE, JIT):
        return False
    return not (mode == FUNC and torch._C._functorch.is_functorch_wrapped_tensor(t))
