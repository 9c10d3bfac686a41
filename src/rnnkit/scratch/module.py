"""Named parameters in NumPy, with ``state_dict`` / ``load_state_dict`` compatible with torch.

A `Module` keeps its parameters in an ordered dict of arrays under the names torch gives
them (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), so a state dict moves between ``rnnkit.scratch``,
``rnnkit.nn`` and ``torch.nn`` unchanged. Torch tensors are accepted by duck typing (anything with
``.detach()`` / ``.numpy()``): this package never imports torch.
"""

from __future__ import annotations

import numpy as np

from rnnkit.checks import check_bool, check_int

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def to_numpy(value) -> np.ndarray:
    """An ndarray from an ndarray, a list, or a torch tensor (on any device, with or without grad)."""
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach()
        if hasattr(value, "cpu"):
            value = value.cpu()
        value = value.numpy()
    return np.asarray(value)


def check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in FLOAT_DTYPES:  # rnnkit.checks.check_choice's wording, for a dtype
        raise TypeError(f"dtype must be one of float32, float64; got {dt}")
    return dt


def check_size(name: str, value, minimum: int = 1) -> int:
    """``rnnkit.checks.check_int``, also taking NumPy's integers (a size read from an array)."""
    if isinstance(value, np.integer):
        value = int(value)
    return check_int(name, value, minimum)


def check_flag(name: str, value) -> bool:
    """``rnnkit.checks.check_bool``, also taking NumPy's bools."""
    return check_bool(name, bool(value) if isinstance(value, np.bool_) else value)


class Module:
    """A container of named float arrays (the parameters) with torch-style state dicts."""

    def __init__(self, dtype=np.float64):
        self.dtype = check_dtype(dtype)
        self._params: dict[str, np.ndarray] = {}

    def parameters(self) -> dict[str, np.ndarray]:
        """The live parameter arrays by name (optimisers update these in place)."""
        return self._params

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter, keyed as in the torch module of the same configuration."""
        return {name: p.copy() for name, p in self._params.items()}

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Copy parameters in from a dict of arrays or torch tensors (cast to this model's dtype).

        With ``strict`` the keys must match exactly; shapes must always match.
        """
        missing = [k for k in self._params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self._params]
        if strict and (missing or unexpected):
            raise KeyError(
                f"state_dict keys do not match {type(self).__name__}: "
                f"missing {missing}, unexpected {unexpected}"
            )
        for name, value in state_dict.items():
            if name not in self._params:
                continue
            array = to_numpy(value)
            target = self._params[name]
            if array.shape != target.shape:
                raise ValueError(
                    f"size mismatch for {name}: expected {tuple(target.shape)}, got {tuple(array.shape)}"
                )
            target[...] = array  # in place, so optimisers holding these arrays stay valid

    def zero_grads(self) -> dict[str, np.ndarray]:
        """Zero arrays shaped like the parameters (a place to accumulate gradients)."""
        return {name: np.zeros_like(p) for name, p in self._params.items()}

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self._params.values()))
