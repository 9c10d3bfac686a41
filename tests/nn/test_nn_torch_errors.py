"""The error catalogue: bad input through torch.nn and through rnnkit, and torch.nn is the oracle.

For every bad input below (constructor arguments, input, hx), torch.nn's class and rnnkit's are
called the same way. Where torch.nn raises a message of its own, rnnkit raises the same exception
type and its message contains torch.nn's word for word (so code that matches on it keeps
working); rnnkit may add detail. The few cases where we do not follow torch.nn are listed in
``DIFFERENT`` with the reason, and the test checks that torch.nn still behaves as the reason says.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit

I, H = 3, 5
F64 = torch.float64


def t(*shape, dtype=torch.float32):
    return torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(len(shape)))


def pair(*shape, dtype=torch.float32):
    return (t(*shape, dtype=dtype), t(*shape, dtype=dtype))


# (case id, class name, constructor kwargs, forward args or None)
CASES = []
for name in ("RNN", "LSTM", "GRU"):
    lstm = name == "LSTM"

    def state(*shape, dtype=torch.float32, lstm=lstm):
        return pair(*shape, dtype=dtype) if lstm else t(*shape, dtype=dtype)

    for kw in [{"hidden_size": 0}, {"hidden_size": -1}, {"hidden_size": 5.0}, {"hidden_size": "5"},
               {"num_layers": 0}, {"num_layers": -2}, {"input_size": 0}, {"input_size": -1},
               {"input_size": 3.0}, {"input_size": "10"}, {"bias": 0}, {"bias": "True"},
               {"batch_first": 1}, {"batch_first": "False"}, {"dropout": -0.1}, {"dropout": 1.5},
               {"dropout": "0.1"}, {"dropout": True}, {"proj_size": -1}, {"proj_size": 5},
               {"proj_size": 7}, {"proj_size": 2}]:
        CASES.append((f"{name}-{kw}", name, {"input_size": I, "hidden_size": H, **kw}, None))
    CASES.append((f"{name}-dropout-one-layer", name, {"input_size": I, "hidden_size": H,
                                                      "dropout": 0.5}, None))
    if name == "RNN":
        CASES.append(("RNN-nonlinearity", name, {"input_size": I, "hidden_size": H,
                                                 "nonlinearity": "sigmoid"}, None))
    forward = {
        "input-1D": (t(I),),
        "input-4D": (t(2, 4, 2, I),),
        "features": (t(4, 2, 7),),
        "features-unbatched": (t(4, 7),),
        "dtype": (t(4, 2, I, dtype=F64),),
        "hx-rows": (t(4, 2, I), state(2, 2, H)),
        "hx-batch": (t(4, 2, I), state(1, 3, H)),
        "hx-hidden": (t(4, 2, I), state(1, 2, 6)),
        "hx-2D-for-batched": (t(4, 2, I), state(1, H)),
        "hx-3D-for-unbatched": (t(4, I), state(1, 1, H)),
        "hx-dtype": (t(4, 2, I), state(1, 2, H, dtype=F64)),
        "packed-features": (pack_padded_sequence(t(4, 2, 7), [4, 3]),),
    }
    if lstm:
        forward |= {
            "hx-single-tensor": (t(4, 2, I), t(2, 2, H)),
            "c-hidden": (t(4, 2, I), (t(1, 2, H), t(1, 2, 6))),
            "c-batch": (t(4, 2, I), (t(1, 2, H), t(1, 3, H))),
            "hx-3-tuple": (t(4, 2, I), (t(1, 2, H),) * 3),
        }
    else:
        forward["hx-tuple"] = (t(4, 2, I), pair(1, 2, H))
    for label, args in forward.items():
        CASES.append((f"{name}-{label}", name, {"input_size": I, "hidden_size": H}, args))
    if lstm:
        proj = {"input_size": I, "hidden_size": H, "proj_size": 2}
        CASES.append(("LSTM-proj-h", name, proj, (t(4, 2, I), pair(1, 2, H))))
        CASES.append(("LSTM-proj-c", name, proj, (t(4, 2, I), pair(1, 2, 2))))

for name in ("RNNCell", "LSTMCell", "GRUCell"):
    lstm = name == "LSTMCell"

    def state(*shape, dtype=torch.float32, lstm=lstm):
        return pair(*shape, dtype=dtype) if lstm else t(*shape, dtype=dtype)

    for kw in [{"hidden_size": -1}, {"hidden_size": 2.0}, {"input_size": "3"}]:
        CASES.append((f"{name}-{kw}", name, {"input_size": I, "hidden_size": H, **kw}, None))
    forward = {
        "input-3D": (t(2, 2, I),),
        "input-0D": (t(),),
        "features": (t(2, 7),),
        "features-unbatched": (t(7),),
        "hx-hidden": (t(2, I), state(2, 6)),
        "hx-batch": (t(2, I), state(4, H)),
        "hx-3D": (t(2, I), state(2, 1, H)),
        "hx-1D-for-batched": (t(2, I), state(H)),
        "hx-2D-for-unbatched": (t(I), state(1, H)),
        "dtype": (t(2, I, dtype=F64),),
        "hx-dtype": (t(2, I), state(2, H, dtype=F64)),
    }
    if lstm:
        forward |= {"hx-single-tensor": (t(2, I), t(2, H)),
                    "c-hidden": (t(2, I), (t(2, H), t(2, 6))),
                    "hx-3-tuple": (t(2, I), (t(2, H),) * 3)}
    for label, args in forward.items():
        CASES.append((f"{name}-{label}", name, {"input_size": I, "hidden_size": H}, args))

# Where rnnkit does not follow torch.nn, and why. Each reason names what torch.nn does; the test
# checks that it still does (torch.nn's outcome: the exception type, or "ok") and that rnnkit
# raises a message of its own.
CELLS = ("RNNCell", "LSTMCell", "GRUCell")
ACCIDENT = "torch.nn has no check here: it fails inside an op with a message about the op"
DIFFERENT = {
    # torch.nn fails inside an op, or passes the wrong thing on and fails later: ours is a check
    **{f"{n}-hx-dtype": ("RuntimeError", ACCIDENT) for n in ("RNN", "GRU", "RNNCell", "GRUCell")},
    "LSTM-hx-dtype": ("RuntimeError", ACCIDENT), "LSTMCell-hx-dtype": ("RuntimeError", ACCIDENT),
    **{f"{n}-hx-tuple": ("AttributeError", ACCIDENT) for n in ("RNN", "GRU")},
    "LSTM-packed-features": ("RuntimeError", ACCIDENT),
    "LSTM-hx-single-tensor": ("RuntimeError", "torch.nn indexes the tensor as if it were the "
                              "pair (h_0, c_0) and reports the dimensions of two slices"),
    **{f"{n}-{{'hidden_size': -1}}": ("RuntimeError", ACCIDENT) for n in CELLS},
    **{f"{n}-{{'hidden_size': 2.0}}": ("TypeError", ACCIDENT) for n in CELLS},
    **{f"{n}-{{'input_size': '3'}}": ("TypeError", ACCIDENT) for n in CELLS},
    **{f"{n}-dtype": ("RuntimeError", ACCIDENT) for n in CELLS},
    **{f"{n}-hx-1D-for-batched": ("RuntimeError", "torch.nn reads the 1-D hx's size as its "
                                  "batch size and reports a batch mismatch") for n in CELLS},
    **{f"{n}-hx-2D-for-unbatched": ("RuntimeError", "torch.nn adds a batch axis to the 2-D hx "
                                    "and reports its batch axis as the hidden size")
       for n in CELLS},
    "LSTMCell-hx-single-tensor": ("TypeError", "torch.nn's binding refuses the tensor (TypeError, "
                                  "as ours) in words about lstm_cell()'s argument list"),
}


def outcome(cls, kwargs: dict, args):
    """(exception type name or "ok", message, warnings) of constructing and calling ``cls``."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            module = cls(**kwargs)
            if args is not None:
                module(*args)
        except Exception as err:  # the point: whatever either library raises
            return type(err).__name__, str(err), []
    return "ok", "", [str(w.message) for w in seen if "oneDNN" not in str(w.message)]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rnnkit_says_what_torch_nn_says(case):
    label, name, kwargs, args = case
    want_type, want, want_warnings = outcome(getattr(nn, name), kwargs, args)
    got_type, got, got_warnings = outcome(getattr(rnnkit, name), kwargs, args)
    if label in DIFFERENT:
        torch_type, reason = DIFFERENT[label]
        assert want_type == torch_type, f"torch.nn changed: {want_type}: {want} (we said: {reason})"
        assert got_type in ("TypeError", "ValueError", "RuntimeError"), got
        assert got.startswith(f"{name}: ") or "should be of type" in got or "must be" in got, got
        return
    assert got_type == want_type, f"torch.nn: {want_type}: {want}\nrnnkit:   {got_type}: {got}"
    assert want in got, f"torch.nn: {want}\nrnnkit:   {got}"
    assert len(got_warnings) == len(want_warnings)
    for w, g in zip(want_warnings, got_warnings):
        assert w in g


def test_the_catalogue_covers_torch_nn_s_own_messages():
    """Most cases must be ones where torch.nn has a message and ours contains it."""
    same = [c for c in CASES if c[0] not in DIFFERENT]
    assert len(same) >= 2 * len(DIFFERENT)
    assert set(DIFFERENT) <= {c[0] for c in CASES}


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_accept_what_torch_nn_s_cells_accept(name):
    """hidden_size=0 gives an empty state, input_size=0 an empty input, bias any truth value."""
    for kwargs, x in [({"input_size": I, "hidden_size": 0}, t(2, I)),
                      ({"input_size": 0, "hidden_size": H}, t(2, 0)),
                      ({"input_size": I, "hidden_size": H, "bias": 0}, t(2, I)),
                      ({"input_size": I, "hidden_size": H, "bias": "yes"}, t(2, I))]:
        torch.manual_seed(0)
        ref = getattr(nn, name)(**kwargs)
        torch.manual_seed(0)
        ours = getattr(rnnkit, name)(**kwargs)
        assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
        want, got = ref(x), ours(x)
        for w, g in zip(torch.utils._pytree.tree_leaves(want), torch.utils._pytree.tree_leaves(got)):
            assert g.shape == w.shape
            torch.testing.assert_close(g, w)
