"""Argument checks at the public edge: each error says what was expected and what was got.

One function per kind of error, one wording each, torch.nn's where torch.nn has one:

* a size that must be a positive int: ``hidden_size should be of type int, got: float`` (TypeError),
  ``hidden_size must be greater than zero, got 0`` (ValueError);
* a flag: ``bias should be of type bool, got: int``; a choice: ``backend must be one of auto,
  native, loop; got 'x'``; a probability: ``zoneout must be a probability in [0, 1), got 1.0``;
* the input: ``LSTM: Expected input to be 2D (T, I) or 3D (T, B, I), got 4D tensor``;
  ``LSTM: input.size(-1) must be equal to input_size. Expected 5, got 3`` (RuntimeError);
* a state: ``LSTM: Expected hx[0] (h_0) size (2, 3, 5), got [2, 4, 5]`` (RuntimeError), then its
  dtype and device against the input's (ValueError).

Every check runs before any work starts. The generic ones (sizes, flags, choices, probabilities)
need no torch and come from ``rnnkit.checks``; the tensor checks are here.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

# The generic checks need no torch: they live in rnnkit.checks (rnnkit.scratch uses them too) and
# are imported here so that every layer takes all its checks from this one module.
from rnnkit.checks import (  # noqa: F401 (re-exported)
    check_bool,
    check_choice,
    check_positive_int,
    check_probability,
)

INIT_STATES = ("zeros", "random", "learned")
BACKENDS = ("auto", "native", "loop")
NONLINEARITIES = ("tanh", "relu")


def check_dropout(dropout) -> float:
    """torch.nn's ``dropout`` between stacked layers: [0, 1] (1 is allowed there), its wording."""
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1:
        raise ValueError(
            "dropout should be a number in range [0, 1] representing the probability of an "
            f"element being zeroed; got {dropout!r}"
        )
    return float(dropout)


def check_nonlinearity(nonlinearity) -> str:
    if nonlinearity not in NONLINEARITIES:  # torch.nn's wording
        raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
    return nonlinearity


def check_proj_size(proj_size, mode: str, hidden_size: int) -> int:
    """torch.nn.LSTM's projection size: 0 (none) or a positive int below hidden_size."""
    if isinstance(proj_size, bool) or not isinstance(proj_size, int) or proj_size < 0:
        raise ValueError(
            "proj_size should be a positive integer or zero to disable projections; "
            f"got {proj_size!r}"
        )
    if proj_size and mode != "LSTM":
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
    if proj_size >= hidden_size:
        raise ValueError(
            f"proj_size has to be smaller than hidden_size; got proj_size={proj_size}, "
            f"hidden_size={hidden_size}"
        )
    return proj_size


def check_input(name: str, x, layouts: dict[int, str], what: str = "a Tensor") -> None:
    """``x`` must be a tensor with one of the ``layouts`` ({dims: "(T, B, I)"}) of dimensions."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected input to be {what}, got {type(x).__name__}")
    if x.dim() not in layouts:
        want = " or ".join(f"{d}D {layout}" for d, layout in layouts.items())
        raise ValueError(f"{name}: Expected input to be {want}, got {x.dim()}D tensor")


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


def check_layer_state(name: str, hx, lstm: bool, shapes: list[tuple[int, ...]], x: Tensor):
    """The ``hx`` of a layer: one tensor, or for an LSTM a pair (h_0, c_0), of these ``shapes``
    (each (L*D, B, ·), or (L*D, ·) for unbatched input). Returns the states as a tuple."""
    shown = " and ".join(str(s) for s in shapes)
    if lstm:
        if isinstance(hx, Tensor):
            raise RuntimeError(
                f"{name}: hx must be a tuple (h_0, c_0) of two tensors of shapes {shown}; "
                f"got a single Tensor of shape {list(hx.shape)}"
            )
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise RuntimeError(
                f"{name}: hx must be a tuple (h_0, c_0) of two tensors, got {type(hx).__name__}"
                + (f" of length {len(hx)}" if isinstance(hx, (tuple, list)) else "")
            )
        states, labels = tuple(hx), ("hx[0] (h_0)", "hx[1] (c_0)")
    else:
        if isinstance(hx, (tuple, list)):
            raise RuntimeError(
                f"{name}: hx must be a single Tensor of shape {shown}, got a "
                f"{type(hx).__name__} (only LSTM takes a pair (h_0, c_0))"
            )
        states, labels = (hx,), ("hx",)
    for s, label, shape in zip(states, labels, shapes):
        if isinstance(s, Tensor) and s.dim() != len(shape):
            kind = "batched 3-D" if len(shape) == 3 else "unbatched 2-D"
            raise RuntimeError(
                f"{name}: For {kind} input, {label} should also be {len(shape)}-D but got "
                f"{s.dim()}-D tensor"
            )
        check_state(name, s, shape, x, label)
    return states
