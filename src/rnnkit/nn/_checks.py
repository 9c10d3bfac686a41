"""Argument checks at the public edge: each error says what was expected and what was got.

One function per kind of error, one wording each, torch.nn's where torch.nn has one:

* a size that must be a positive int: ``hidden_size should be of type int, got: float`` (TypeError),
  ``hidden_size must be greater than zero, got 0`` (ValueError);
* a flag: ``bias should be of type bool, got: int``; a choice: ``backend must be one of auto,
  native, loop; got 'x'``; a probability: ``zoneout must be a probability in [0, 1), got 1.0``;
* the input: ``LSTM: Expected input to be 2D or 3D, got 4D instead (2D: (T, I), 3D: (T, B, I))``;
  ``LSTM: input.size(-1) must be equal to input_size. Expected 5, got 3`` (RuntimeError);
* a state: ``LSTM: Expected hidden[0] size (2, 3, 5), got [2, 4, 5] (h_0 of hx = (h_0, c_0):
  ...)`` (RuntimeError), then its dtype and device against the input's (ValueError).

Where torch.nn has a message for an error, ours contains it word for word (code and tests that
match on torch.nn's text keep working) and may add detail after it;
``tests/nn/test_nn_torch_errors.py`` runs a catalogue of bad inputs through both and checks.
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
from rnnkit.nn.tracing import values_readable

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
    if proj_size is not None and proj_size != 0 and mode != "LSTM":  # torch.nn's first question
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
    if isinstance(proj_size, bool) or not isinstance(proj_size, int):
        raise TypeError(f"proj_size should be of type int, got: {type(proj_size).__name__}")
    if proj_size < 0:
        raise ValueError(
            "proj_size should be a positive integer or zero to disable projections; "
            f"got {proj_size!r}"
        )
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
        want = " or ".join(f"{d}D" for d in layouts)
        shown = ", ".join(f"{d}D: {layout}" for d, layout in layouts.items())
        # torch.nn's words: its RNN says "got 1D tensor instead", its LSTM and GRU "got 1D instead"
        noun = " tensor" if name in ("RNN", "FusedRNN") else ""
        raise ValueError(
            f"{name}: Expected input to be {want}, got {x.dim()}D{noun} instead ({shown})"
        )


def check_lengths(lengths, batch_size: int, seq_len: int, device: torch.device) -> Tensor:
    """Validate per-sequence lengths; returns them as an int64 tensor on ``device``.

    Each length must lie in [1, seq_len]: a sequence of length 0 has no last step to report.
    The values are checked in eager only: a traced graph would fix them into itself (see
    `rnnkit.nn.tracing.values_readable`), so compiled and exported calls trust them.
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
    if not values_readable(lengths):
        return lengths.to(device=device, dtype=torch.int64)
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 1 or hi > seq_len:
        raise ValueError(
            f"every length must be between 1 and the sequence length {seq_len}; "
            f"got min {lo}, max {hi}"
        )
    return lengths.to(device=device, dtype=torch.int64)


def check_state(
    name: str, state: Tensor, expected: tuple[int, ...], like: Tensor, label: str = "hx",
    shape_label: str | None = None, detail: str = "",
) -> None:
    """A state tensor must match the expected shape and the input's dtype and device.

    The shape error reads ``Expected {shape_label} size (...), got [...]{detail}`` (torch.nn's
    words for its layers' ``hidden``), the dtype and device errors name the state ``label``.
    """
    if not isinstance(state, Tensor):
        raise TypeError(f"{name}: {label} must be a Tensor, got {type(state).__name__}")
    if tuple(state.shape) != tuple(expected):
        raise RuntimeError(f"{name}: Expected {shape_label or label} size {tuple(expected)}, "
                           f"got {list(state.shape)}{detail}")
    check_like(name, state, like, label)


def check_like(name: str, state: Tensor, like: Tensor, label: str) -> None:
    """A state's dtype and device must be the input's."""
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
    check_dtype(name, x, weight)


def check_dtype(name: str, x: Tensor, weight: Tensor) -> None:
    """The input's dtype must be the weights' (autocast aside); torch.nn's words."""
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(
            f"{name}: RNN input dtype ({x.dtype}) does not match weight dtype ({weight.dtype}). "
            f"Convert input: input.to({weight.dtype}), or convert model: model.to({x.dtype})"
        )


def check_layer_state(name: str, hx, lstm: bool, shapes: list[tuple[int, ...]], x: Tensor):
    """The ``hx`` of a layer: one tensor, or for an LSTM a pair (h_0, c_0), of these ``shapes``
    (each (L*D, B, ·), or (L*D, ·) for unbatched input). Returns the states as a tuple."""
    def shown() -> str:  # only when an error is raised: Dynamo cannot trace str(tuple)
        return " and ".join(str(s) for s in shapes)

    batched = len(shapes[0]) == 3
    kind = "batched 3-D" if batched else "unbatched 2-D"
    if lstm:
        if isinstance(hx, Tensor):
            raise RuntimeError(
                f"{name}: hx must be a tuple (h_0, c_0) of two tensors of shapes {shown()}; "
                f"got a single Tensor of shape {list(hx.shape)}"
            )
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise RuntimeError(
                f"{name}: lstm expects two hidden states: hx must be a tuple (h_0, c_0) of two "
                f"tensors, got {type(hx).__name__}"
                + (f" of length {len(hx)}" if isinstance(hx, (tuple, list)) else "")
            )
        states = tuple(hx)
        dims = [s.dim() if isinstance(s, Tensor) else None for s in states]
        if any(d is not None and d != len(shapes[0]) for d in dims):
            raise RuntimeError(
                f"{name}: For {kind} input, hx and cx should also be {len(shapes[0])}-D but got "
                f"({dims[0]}-D, {dims[1]}-D) tensors"
            )
        labels, what = ("hidden[0]", "hidden[1]"), ("h_0", "c_0")
        names = ("hx[0] (h_0)", "hx[1] (c_0)")
    else:
        if isinstance(hx, (tuple, list)):
            raise RuntimeError(
                f"{name}: hx must be a single Tensor of shape {shown()}, got a "
                f"{type(hx).__name__} (only LSTM takes a pair (h_0, c_0))"
            )
        states, labels, what, names = (hx,), ("hidden",), ("hx",), ("hx",)
        if isinstance(hx, Tensor) and hx.dim() != len(shapes[0]):
            raise RuntimeError(
                f"{name}: For {kind} input, hx should also be {len(shapes[0])}-D but got "
                f"{hx.dim()}-D tensor"
            )
    rows = "num_layers * num_directions" + (", B" if batched else "")
    for s, label, w, n, shape in zip(states, labels, what, names, shapes):
        size = "proj_size or hidden_size" if w == "h_0" else "hidden_size"
        detail = f" ({w} of hx = (h_0, c_0): ({rows}, {size}))" if lstm else (
            f" (hx: ({rows}, hidden_size))")
        check_state(name, s, shape, x, n, shape_label=label, detail=detail)
    return states
