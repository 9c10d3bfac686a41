"""rnnkit.checks: one wording per kind of error, the value back when it is good, no torch."""

import math
import subprocess
import sys

import pytest

from rnnkit import checks


@pytest.mark.parametrize("call, error, message", [
    (lambda: checks.check_positive_int("hidden_size", 0), ValueError,
     "hidden_size must be greater than zero, got 0"),
    (lambda: checks.check_positive_int("hidden_size", 2.0), TypeError,
     "hidden_size should be of type int, got: float"),
    (lambda: checks.check_positive_int("k", True), TypeError, "k should be of type int, got: bool"),
    (lambda: checks.check_int("steps", -1, 0), ValueError, "steps must be at least 0, got -1"),
    (lambda: checks.check_int("vocab_size", 1, 2), ValueError, "vocab_size must be at least 2, got 1"),
    (lambda: checks.check_int("steps", "3", 0), TypeError, "steps should be of type int, got: str"),
    (lambda: checks.check_positive_number("lr", 0), ValueError, "lr must be greater than zero, got 0"),
    (lambda: checks.check_positive_number("lr", math.inf), ValueError,
     "lr must be greater than zero, got inf"),
    (lambda: checks.check_positive_number("lr", "0.1"), TypeError, "lr should be of type float, got: str"),
    (lambda: checks.check_range("top_p", 1.5, 0, 1, low_open=True), ValueError,
     "top_p must lie in (0, 1], got 1.5"),
    (lambda: checks.check_range("top_p", 0, 0, 1, low_open=True), ValueError,
     "top_p must lie in (0, 1], got 0"),
    (lambda: checks.check_range("t", -0.5, 0, math.inf), ValueError, "t must lie in [0, inf), got -0.5"),
    (lambda: checks.check_range("t", math.nan, 0, math.inf), ValueError, "t must lie in [0, inf), got nan"),
    (lambda: checks.check_range("f", 0.25, 0.5, 0.75, high_open=True), ValueError,
     "f must lie in [0.5, 0.75), got 0.25"),
    (lambda: checks.check_range("f", False, 0, 1), TypeError, "f should be of type float, got: bool"),
    (lambda: checks.check_bool("bias", 1), TypeError, "bias should be of type bool, got: int"),
    (lambda: checks.check_choice("cell", "tcn", ("rnn", "lstm")), ValueError,
     "cell must be one of rnn, lstm; got 'tcn'"),
    (lambda: checks.check_choice("cell", None, ("rnn",)), ValueError, "cell must be one of rnn; got None"),
    (lambda: checks.check_probability("zoneout", 1.0), ValueError,
     "zoneout must be a probability in [0, 1), got 1.0"),
])
def test_each_kind_of_error_has_one_wording(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == message


def test_good_values_come_back():
    assert checks.check_positive_int("n", 3) == 3
    assert checks.check_int("n", 0, 0) == 0
    assert checks.check_positive_number("lr", 2) == 2.0 and type(checks.check_positive_number("lr", 2)) is float
    assert checks.check_range("p", 1, 0, 1, low_open=True) == 1.0
    assert checks.check_range("t", 0, 0, math.inf) == 0.0
    assert checks.check_bool("b", False) is False
    assert checks.check_choice("c", "lstm", ("rnn", "lstm")) == "lstm"
    assert checks.check_probability("p", 0) == 0.0


def test_errors_as_keeps_the_message_and_changes_the_class():
    class ConfigError(ValueError):
        pass

    for bad, message in ((0, "--steps must be greater than zero, got 0"),
                         (1.5, "--steps should be of type int, got: float")):
        with pytest.raises(ConfigError) as info:
            with checks.errors_as(ConfigError):
                checks.check_positive_int("--steps", bad)
        assert str(info.value) == message
    with pytest.raises(KeyError):  # not a check's error: left alone
        with checks.errors_as(ConfigError):
            raise KeyError("x")


def test_the_nn_checks_are_these():
    from rnnkit.nn import _checks

    for name in ("check_positive_int", "check_bool", "check_choice", "check_probability"):
        assert getattr(_checks, name) is getattr(checks, name)


def test_never_imports_torch():
    code = "import sys, rnnkit.checks; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
