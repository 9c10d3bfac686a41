"""Helpers shared by the layer tests in tests/nn and the folders below it. A plain module: pytest
puts tests/nn on sys.path when it loads tests/nn/conftest.py (the folders below import it too)."""

from __future__ import annotations

import torch


def perturbed(cls, I, H, dtype=torch.float64, seed=0, **kw):
    """``cls(I, H, dtype=dtype, **kw)`` drawn after ``torch.manual_seed(seed)``, its layer-norm
    gains and shifts moved away from the trivial 1 and 0 so that every parameter matters."""
    torch.manual_seed(seed)
    m = cls(I, H, dtype=dtype, **kw)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("ln_"):
                p.add_(0.3 * torch.randn_like(p))
    return m
