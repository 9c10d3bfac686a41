"""The general recurrence ``h_t = σ(v(x_t) + q(h_{t-1}))``, ``y_t = u(h_t)``, for any v, q, u.

v (the input map) does not depend on the state, so it runs over all time steps in one call; only q
(the recurrent map) runs step by step. u (the output map) runs once over all the states at the end.
With v, q affine, σ = tanh and u affine this is the Elman network (see `rnnkit.Elman`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from rnnkit.nn._checks import (
    INIT_STATES,
    check_bool,
    check_choice,
    check_lengths,
    check_positive_int,
)
from rnnkit.nn.interop import TorchInterop
from rnnkit.nn.loop import length_mask
from rnnkit.nn.paths import LOOP, choose_path, time_loop
from rnnkit.nn.sequence import check_h0, from_time_major, initial_state, step_once, to_time_major


class Recurrent(TorchInterop, nn.Module):
    """``h_t = activation(v(x_t) + q(h_{t-1}))``, ``y_t = u(h_t)`` (or ``h_t`` when u is None).

    x (T, B, I), (B, T, I) with batch_first, or unbatched (T, I); h0 (B, H) or (H,).
    Returns y (T, B, O) (or h's shape when u is None) and h_n (B, H).
    v: (..., I) -> (..., H) applied to the whole sequence; q: (B, H) -> (B, H); u: (..., H) -> (..., O).
    """

    def __init__(
        self,
        v: Callable[[Tensor], Tensor],
        q: Callable[[Tensor], Tensor],
        u: Callable[[Tensor], Tensor] | None = None,
        *,
        hidden_size: int,
        activation: Callable[[Tensor], Tensor] = torch.tanh,
        init_state: str = "zeros",
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        for name, f in (("v", v), ("q", q), ("activation", activation)):
            if not callable(f):
                raise TypeError(f"{name} must be a module or a callable, got {type(f).__name__}")
        if u is not None and not callable(u):
            raise TypeError(f"u must be a module, a callable or None, got {type(u).__name__}")
        check_positive_int("hidden_size", hidden_size)
        check_choice("init_state", init_state, INIT_STATES)
        check_bool("batch_first", batch_first)
        self.v, self.q, self.u = v, q, u  # modules among them register their parameters
        self.activation = activation
        self.hidden_size, self.init_state, self.batch_first = hidden_size, init_state, batch_first
        if init_state == "learned":
            self.h0 = nn.Parameter(torch.zeros(hidden_size))

    def initial_state(self, batch_size: int | None = None, *, like: Tensor | None = None) -> Tensor:
        """h0 of shape (batch_size, H), or (H,) when batch_size is None."""
        if like is None:
            ref = next(self.parameters(), None)
            like = ref if ref is not None else torch.empty(0)
        shape = (self.hidden_size,) if batch_size is None else (batch_size, self.hidden_size)
        return initial_state(self.init_state, self.training, shape, like, getattr(self, "h0", None))

    def forward(
        self, x: Tensor, h0: Tensor | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        name = type(self).__name__
        x, batched = to_time_major(name, x, self.batch_first)  # (T, B, I)
        T, B = x.shape[:2]
        vx = self.v(x)  # (T, B, H), every step in one call
        if vx.shape != (T, B, self.hidden_size):
            raise RuntimeError(
                f"{name}: v(x) must have shape (T, B, hidden_size) = {(T, B, self.hidden_size)}, "
                f"got {tuple(vx.shape)}"
            )
        if h0 is None:
            h = self.initial_state(B, like=vx)
        else:
            h = check_h0(name, h0, B, self.hidden_size, batched, vx)
        if lengths is not None:
            lengths = check_lengths(lengths, B, T, x.device)
        q, act = self.q, self.activation
        loop = time_loop(choose_path(LOOP, vx))  # torch's scan op under compile and export
        hs, (h_n,) = loop(lambda g, s: (act(g + q(s[0])),), vx, (h,), lengths)  # (T, B, H)
        y = hs if self.u is None else self.u(hs)
        if lengths is not None and self.u is not None:  # u(0) need not be 0: zero the padding
            y = y.masked_fill(~length_mask(lengths, T), 0.0)
        return from_time_major(y, h_n, batched, self.batch_first)

    def step(self, x_t: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One time step: x_t (B, I) or (I,) -> (y_t, h_t). Carry h_t into the next call."""
        return step_once(self, x_t, h)
