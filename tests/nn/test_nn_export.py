"""torch.export.export of every layer and task model with dynamic time and batch axes.

Each is exported once at (T, B) = (4, 3) and the program is run at three other lengths and batch
sizes against the eager module (float32, 1e-5 relative to the largest output). The layers take
torch's scan op when exported (rnnkit.nn.tracing), so the time loop is one graph node and T
stays a symbol.
"""

from __future__ import annotations

import pytest
import torch
from nn_zoo import ALL, assert_close
from torch.export import Dim

import rnnkit

EXPORT_T, EXPORT_B = 4, 3
SIZES = [(7, 2), (2, 5), (11, 1)]


def dynamic_shapes(kind, args, kwargs):
    """T and B for every tensor input: inputs that carry a batch axis get B, the first its T."""
    T, B = Dim("T", min=2), Dim("B", min=1)

    def spec(x, first):
        if not isinstance(x, torch.Tensor):
            return [spec(v, False) for v in x] if isinstance(x, (tuple, list)) else None
        axes = {kind.batch_axis if x.dim() > 1 or kind.time_axis is None else 0: B}
        if first and kind.time_axis is not None:
            axes[kind.time_axis] = T
        elif x.dim() == 1:
            axes = {0: B}  # lengths
        return axes

    shapes = [spec(a, k == 0) for k, a in enumerate(args)]
    if kind.name == "Seq2Seq":  # the target has its own length
        shapes[2] = {0: B, 1: Dim("U", min=2)}
    return tuple(shapes), {k: spec(v, False) for k, v in kwargs.items()}


@pytest.mark.parametrize("kind", ALL, ids=[k.name for k in ALL])
def test_exported_program_equals_eager_at_other_sizes(kind):
    module = kind.build()
    args, kwargs = kind.make(EXPORT_T, EXPORT_B)
    shapes, kw_shapes = dynamic_shapes(kind, args, kwargs)
    if kind.name.endswith("Cell"):  # a state given as a tuple: one spec per tensor
        shapes = (shapes[0], tuple(shapes[1]) if isinstance(shapes[1], list) else shapes[1])
    with torch.no_grad():
        program = torch.export.export(module, args, kwargs,
                                      dynamic_shapes={**dict(zip(_names(module, args), shapes)),
                                                      **kw_shapes})
    run = program.module()
    for T, B in SIZES:
        args, kwargs = kind.make(T, B)
        with torch.no_grad():
            assert_close(run(*args, **kwargs), module(*args, **kwargs), what=f"{kind.name} {T}x{B}")


def _names(module, args):
    import inspect

    return list(inspect.signature(module.forward).parameters)[: len(args)]


@pytest.mark.filterwarnings("ignore:torch.compile is ignored when called inside torch.export")
@pytest.mark.parametrize("strict", [False, True])
def test_export_with_autograd_on_keeps_time_dynamic(strict):
    """Outside no_grad torch.compile unrolls the loop (rnnkit.nn.paths.traced_path); torch.export
    must not: it still takes the scan, so the program holds at other lengths."""
    torch.manual_seed(0)
    module = rnnkit.GRU(3, 4, bidirectional=True).eval()
    program = torch.export.export(module, (torch.randn(5, 2, 3),), strict=strict,
                                  dynamic_shapes=({0: Dim("T", min=2), 1: Dim("B", min=1)},))
    for T, B in SIZES:
        x = torch.randn(T, B, 3)
        assert_close(program.module()(x), module(x), what=f"{T}x{B}")
