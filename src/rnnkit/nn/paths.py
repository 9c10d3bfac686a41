"""Which implementation runs a call: the one place the choice is made.

Four paths compute the same function (each is tested against its reference; see
docs/architecture.md):

* ``native``: PyTorch's own RNN kernels (``torch._VF``, what ``torch.nn.RNN/LSTM/GRU`` call;
  :mod:`rnnkit.nn.native`), for the stock layers in stock configurations.
* ``fast``: rnnkit's fast path (:mod:`rnnkit.nn.fast`): one autograd Function per sequence with
  hand-written BPTT, each step's arithmetic by eager ATen kernels, for the layers torch has no
  kernel for (layer norm, recurrent dropout; the ``Fused*`` layers).
* ``compiled`` (the default where it applies): the fast path with the time loop and each step's
  elementwise work in C++ (:mod:`rnnkit.nn.fast.compiled`), where a compiled kernel covers the
  cell, device and dtype and the extension could be built (else ``fast``, after one warning).
* ``loop``: the readable Python time loop (:func:`rnnkit.nn.loop.scan`) over the step functions,
  with autograd for the backward: the reference every other path is tested against.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.nn.fast.compiled.build import kernels
from rnnkit.nn.fast.registry import KERNELS
from rnnkit.options import current

NATIVE, FAST, COMPILED, LOOP = "native", "fast", "compiled", "loop"


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
    if backend == LOOP:
        return LOOP
    if native:
        return NATIVE
    if fast_cell is None:  # no kernel for this configuration (an LSTM with proj_size, say)
        return LOOP
    want_compiled = current().compiled if compiled is None else compiled
    if (want_compiled and KERNELS[fast_cell].compiled is not None and x.device.type == "cpu"
            and compute_dtype(x) in (torch.float32, torch.float64)
            and kernels() is not None):  # built on first use; None (warned once): eager
        return COMPILED
    return FAST
