"""What every sequence layer shares: the input's layout, the initial state, one step at a time.

Used by the torch.nn-compatible layers (``rnnkit.nn.rnn``), the general recurrence
(``rnnkit.nn.recurrent``) and the Elman network (``rnnkit.nn.elman``), so that they take their
inputs, make their initial states and stream one step the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.nn._checks import check_input, check_state


def initial_state(
    init_state: str, training: bool, shape: tuple[int, ...], like: Tensor, learned: Tensor | None
) -> Tensor:
    """The state used when the caller gives none, of ``shape``: ``"zeros"``; ``"random"`` (fresh
    standard-normal noise on every call in training, zeros in eval); ``"learned"`` (the parameter
    ``learned``, broadcast to ``shape``). In ``like``'s dtype and device."""
    if init_state == "learned":
        return learned.expand(shape).to(like.dtype)
    if init_state == "random" and training:
        return torch.randn(shape, dtype=like.dtype, device=like.device)
    return torch.zeros(shape, dtype=like.dtype, device=like.device)


def check_h0(name: str, h0, batch: int, hidden_size: int, batched: bool, like: Tensor) -> Tensor:
    """A given h0 must be (B, H) for batched input, (H,) unbatched, in the input's dtype.
    Returns it batched."""
    check_state(name, h0, (batch, hidden_size) if batched else (hidden_size,), like, "h0")
    return h0 if batched else h0.unsqueeze(0)


def to_time_major(name: str, x, batch_first: bool) -> tuple[Tensor, bool]:
    """(T, I), (T, B, I) or batch-first (B, T, I) -> ((T, B, I), batched)."""
    check_input(name, x, {2: "(T, I)", 3: "(B, T, I)" if batch_first else "(T, B, I)"})
    if x.dim() == 2:
        return x.unsqueeze(1), False  # (T, 1, I)
    return (x.transpose(0, 1) if batch_first else x), True


def from_time_major(y: Tensor, h_n: Tensor, batched: bool, batch_first: bool):
    """Undo :func:`to_time_major` on the outputs y (T, B, O) and h_n (B, H)."""
    if not batched:
        return y.squeeze(1), h_n.squeeze(0)
    return (y.transpose(0, 1) if batch_first else y), h_n


def step_once(module: nn.Module, x_t, h):
    """One time step through ``module.forward``: x_t (B, I) or (I,) -> (y_t, new state).

    The state is what ``forward`` takes and returns; carry it from call to call.
    """
    check_input(f"{type(module).__name__}.step", x_t, {1: "(I,)", 2: "(B, I)"})
    time_dim = 1 if (module.batch_first and x_t.dim() == 2) else 0
    y, h = module(x_t.unsqueeze(time_dim), h)
    return y.squeeze(time_dim), h
