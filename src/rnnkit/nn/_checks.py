"""Argument checks at the public edge: each error says what was expected and what was got."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

INIT_STATES = ("zeros", "random", "learned")
BACKENDS = ("auto", "native", "loop")


def check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be greater than zero, got {value}")


def check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")


def check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_dropout(dropout) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1:
        raise ValueError(
            "dropout should be a number in range [0, 1] representing the probability of an "
            f"element being zeroed; got {dropout!r}"
        )
    return float(dropout)


def check_lengths(lengths, batch_size: int, seq_len: int, device: torch.device) -> Tensor:
    """Validate per-sequence lengths; returns them as an int64 tensor on ``device``.

    Each length must lie in [1, seq_len]: a sequence of length 0 has no last step to report.
    """
    if not isinstance(lengths, Tensor):
        try:
            lengths = torch.as_tensor(lengths)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"lengths must be a 1-D tensor of integers, got {type(lengths).__name__}"
            ) from err
    if lengths.dim() == 0:
        lengths = lengths.reshape(1)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be a 1-D tensor, got a {lengths.dim()}-D tensor")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
    if lengths.numel() != batch_size:
        raise ValueError(
            "lengths must have one entry per sequence in the batch. "
            f"Expected {batch_size}, got {lengths.numel()}"
        )
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 1 or hi > seq_len:
        raise ValueError(
            f"every length must be between 1 and the sequence length {seq_len}; "
            f"got min {lo}, max {hi}"
        )
    return lengths.to(device=device, dtype=torch.int64)


def check_state(
    name: str, state: Tensor, expected: tuple[int, ...], like: Tensor, label: str = "hx"
) -> None:
    """A state tensor must match the expected shape and the input's dtype and device."""
    if not isinstance(state, Tensor):
        raise TypeError(f"{name}: {label} must be a Tensor, got {type(state).__name__}")
    if tuple(state.shape) != tuple(expected):
        raise RuntimeError(f"{name}: Expected {label} size {tuple(expected)}, got {list(state.shape)}")
    if state.dtype != like.dtype:
        raise ValueError(
            f"{name}: {label} dtype ({state.dtype}) does not match input dtype ({like.dtype})"
        )
    if state.device != like.device:
        raise ValueError(
            f"{name}: {label} is on {state.device} but the input is on {like.device}"
        )


def check_features(name: str, x: Tensor, input_size: int, weight: Tensor) -> None:
    """The input's last axis must be input_size and its dtype the weights' (autocast aside)."""
    if x.size(-1) != input_size:
        raise RuntimeError(
            f"{name}: input.size(-1) must be equal to input_size. "
            f"Expected {input_size}, got {x.size(-1)}"
        )
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(
            f"{name}: input dtype ({x.dtype}) does not match weight dtype ({weight.dtype}). "
            f"Convert the input with input.to({weight.dtype}) or the model with model.to({x.dtype})"
        )
