"""Which implementation runs a call: the one place the choice is made.

Five paths compute the same function (each is tested against its reference; see
docs/architecture.md):

* ``native``: PyTorch's own RNN kernels (``torch._VF``, what ``torch.nn.RNN/LSTM/GRU`` call;
  `rnnkit.nn.native`), for the stock layers in stock configurations.
* ``fast``: rnnkit's fast path (`rnnkit.nn.fast`): one autograd Function per sequence with
  hand-written BPTT, each step's arithmetic by eager ATen kernels, for the layers torch has no
  kernel for (layer norm, recurrent dropout; the ``Fused*`` layers).
* ``compiled`` (the default where it applies): the fast path with the time loop and each step's
  elementwise work in C++ (`rnnkit.nn.fast.compiled`), where a compiled kernel covers the
  cell, device and dtype and the extension could be built (else ``fast``, after one warning).
* ``loop``: the readable Python time loop (`rnnkit.nn.loop.scan`) over the step functions,
  with autograd for the backward: the reference every other path is tested against.
* ``scan``: the same steps with the time loop as torch's ``scan`` op (`rnnkit.export.scan`),
  taken under ``torch.export`` and under ``torch.compile`` without autograd (see
  `rnnkit.nn.tracing`): T stays symbolic, and nothing of the fast path (its buffer pool,
  locks, MKL ops, C++ extension) enters a graph. With autograd, ``torch.compile`` gets the
  readable loop, unrolled (see `traced_path`).

Under a ``torch.func`` transform the layers take the loop; under ``torch.jit.trace`` PyTorch's
kernels where the layer can use them, else the loop, unrolled, with a warning (see
`traced_path`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.nn.fast.compiled.build import kernels, ready
from rnnkit.nn.fast.registry import KERNELS
from rnnkit.nn.loop import scan
from rnnkit.nn.tracing import COMPILE, FUNC, exporting, tracing
from rnnkit.options import current

NATIVE, FAST, COMPILED, LOOP = "native", "fast", "compiled", "loop"
SCAN = "scan"


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype the kernels will see: autocast's where it is on (the input projection casts)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def choose_path(
    backend: str,
    x: Tensor,
    *,
    native: bool = False,
    fast_cell: str | None = None,
    compiled: bool | None = None,
) -> str:
    """The path for one call of a layer on input ``x``.

    backend: the layer's ``backend`` argument (``"auto"``, ``"native"``, ``"loop"``); native:
    whether the layer can run on PyTorch's kernels; fast_cell: its cell on the fast path (a name
    in ``rnnkit.nn.fast.registry.KERNELS``), None if it has none; compiled: the layer's own
    choice, None to follow ``rnnkit.options(compiled=...)``.
    """
    traced = tracing(x)
    if traced is not None:  # a tracer or transform watches: only what it can hold
        return traced_path(traced, backend, native)
    if backend == LOOP:
        return LOOP
    if native:
        return NATIVE
    if fast_cell is None:  # no kernel for this configuration (an LSTM with proj_size, say)
        return LOOP
    return COMPILED if compiled_applies(fast_cell, x, compiled) else FAST


def compiled_applies(fast_cell: str, x: Tensor, compiled: bool | None, build: bool = True) -> bool:
    """Whether the compiled kernel of ``fast_cell`` runs this call: wanted (the layer's
    ``compiled``, else ``rnnkit.options``), a kernel for the cell, a CPU float32/float64 input,
    and the extension loaded. build: whether it may be built now (first use; None, warned
    once, means eager); else only a build that loads at once counts."""
    want = current().compiled if compiled is None else compiled
    if not (want and KERNELS[fast_cell].compiled is not None and x.device.type == "cpu"
            and compute_dtype(x) in (torch.float32, torch.float64)):
        return False
    return (build or ready()) and kernels() is not None


def traced_path(mode: str, backend: str, native: bool) -> str:
    """The path while ``mode`` (see `rnnkit.nn.tracing.tracing`) watches the call.

    torch.export, and torch.compile without autograd: ``scan``, whatever the backend (it runs
    the loop's steps; T stays symbolic). torch.compile with autograd on: ``loop``, which Dynamo
    unrolls (the graph is specialised to T and recompiled for a new length), because Inductor
    in torch 2.13 miscompiles the backward of a scan that closes over parameters (wrong
    gradients for GRU's ``b_hh``, and ``W_hh`` of bidirectional layers;
    ``tests/nn/test_nn_compile.py`` holds both paths to eager). torch.func: ``loop``.
    torch.jit.trace: ``native`` where the layer can run PyTorch's kernels (one traced node for
    any length), else the loop, which the tracer unrolls: a warning says
    the trace holds exactly the traced number of steps, and the TorchScript-based ONNX exporter
    is refused (its graph would silently compute something else at any other length).
    """
    if mode == COMPILE:
        training = torch.is_grad_enabled() and not exporting()
        return LOOP if training else SCAN
    if mode == FUNC:
        return LOOP
    if native and backend != LOOP:
        return NATIVE
    import warnings

    from torch.onnx import is_in_onnx_export

    if is_in_onnx_export():
        raise RuntimeError(
            "rnnkit: the TorchScript-based ONNX exporter (torch.onnx.export(..., dynamo=False)) "
            "would unroll this layer's time loop into the traced number of steps; export with "
            "rnnkit.export.to_onnx(model, path) or torch.onnx.export(..., dynamo=True) instead"
        )
    warnings.warn(
        "rnnkit: torch.jit.trace unrolls this layer's Python time loop, so the trace holds "
        "exactly the traced number of steps and is wrong for any other sequence length; "
        "torch.export.export (or rnnkit.export) keeps the time axis dynamic",
        torch.jit.TracerWarning, stacklevel=4,
    )
    return LOOP


def time_loop(path: str):
    """The time loop of ``path``: torch's scan op for ``scan``, else the readable loop. Both take
    ``(step, gi, state, lengths, reverse, keep=)`` (see `rnnkit.nn.loop.scan`)."""
    if path == SCAN:
        from rnnkit.export.scan import loop_scan  # imports torch's scan op only when tracing

        return loop_scan
    return scan
