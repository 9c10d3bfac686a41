"""Argument checks that need no torch: one function per kind of error, one wording each.

Every message names the argument, says what was expected and what was got, in torch.nn's words
where torch.nn has some:

* a whole number: ``hidden_size should be of type int, got: float`` (TypeError);
  ``hidden_size must be greater than zero, got 0``, ``steps must be at least 0, got -1`` (ValueError);
* a real number: ``lr should be of type float, got: str`` (TypeError); ``lr must be greater than
  zero, got 0``, ``top_p must lie in (0, 1], got 1.5`` (ValueError);
* a flag: ``bias should be of type bool, got: int``; a choice: ``backend must be one of auto,
  native, loop; got 'x'``; a probability: ``zoneout must be a probability in [0, 1), got 1.0``.

Each returns the value it checked, so a constructor can check and store in one line;
``errors_as(ConfigError)`` raises a failed check as the error its caller catches. The checks of
tensors (shapes, lengths, states) need torch and live in ``rnnkit.nn._checks``; NumPy's
(``rnnkit.scratch``) use these, since ``rnnkit.scratch`` never imports torch.
"""

from __future__ import annotations

import contextlib
import math
import numbers


def check_int(name: str, value, minimum: int) -> int:
    """A whole number >= ``minimum`` (an ``int``, not a ``bool``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value < minimum:
        if minimum == 1:  # torch.nn's wording for sizes
            raise ValueError(f"{name} must be greater than zero, got {value}")
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_positive_int(name: str, value) -> int:
    """A whole number > 0: a size, a count, a number of steps."""
    return check_int(name, value, 1)


def check_real(name: str, value) -> float:
    """A real number (an int or a float, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} should be of type float, got: {type(value).__name__}")
    return float(value)


def check_positive_number(name: str, value) -> float:
    """A finite real number > 0: a learning rate, a temperature, a clipping norm."""
    number = check_real(name, value)
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be greater than zero, got {value!r}")
    return number


def check_range(name: str, value, low: float, high: float, *, low_open: bool = False,
                high_open: bool = False) -> float:
    """A real number in the interval from ``low`` to ``high``, each end closed unless ``*_open``
    (an infinite end is always open): ``check_range("top_p", p, 0, 1, low_open=True)`` is (0, 1]."""
    number = check_real(name, value)
    low_open, high_open = low_open or math.isinf(low), high_open or math.isinf(high)
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    if not (above and below):  # NaN fails both
        interval = f"{'(' if low_open else '['}{_show(low)}, {_show(high)}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return number


def _show(bound: float) -> str:
    """1.0 -> "1", inf -> "inf": the bounds as a person writes them."""
    return str(int(bound)) if math.isfinite(bound) and bound == int(bound) else str(bound)


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
    return value


def check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def check_probability(name: str, p) -> float:
    """A dropout probability in [0, 1); 1 would drop everything and divide by zero."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise ValueError(f"{name} must be a probability in [0, 1), got {p!r}")
    return float(p)


def check_sampling(vocab_size: int, temperature, top_k, top_p, length) -> int | None:
    """The sampling options of ``rnnkit sample`` (the torch sampler and the torch-free one take the
    same options, so one check serves both); returns top_k capped at the vocabulary size."""
    check_range("--temperature", temperature, 0, math.inf)  # 0: greedy
    if top_k is not None:
        top_k = min(check_positive_int("--top-k", top_k), vocab_size)
    if top_p is not None:
        check_range("--top-p", top_p, 0, 1, low_open=True)
    check_int("--length", length, 0)
    return top_k


@contextlib.contextmanager
def errors_as(kind: type[ValueError]):
    """Raise a failed check (TypeError or ValueError) as ``kind``, with the same message: for a
    caller that reports one error class (``ConfigError``, ``SamplingError``) to the user."""
    try:
        yield
    except (TypeError, ValueError) as err:
        if isinstance(err, kind):
            raise
        raise kind(str(err)) from None
