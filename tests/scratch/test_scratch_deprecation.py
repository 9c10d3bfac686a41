"""The names rnnkit.scratch had before the textbook/tuned split still work, with a DeprecationWarning
that names the replacement (scratch/deprecation.py)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from rnnkit import scratch
from rnnkit.scratch import charlm, fast

OLD_NAMES = [  # module, old name, the object it now gives, the replacement the warning names
    ("rnnkit.scratch", "CharLM", fast.FastNumpyCharLM, "rnnkit.scratch.fast.FastNumpyCharLM"),
    ("rnnkit.scratch", "BatchSplit", fast.BatchSplit, "rnnkit.scratch.fast.BatchSplit"),
    ("rnnkit.scratch.charlm", "CharLM", fast.FastNumpyCharLM, "rnnkit.scratch.fast.FastNumpyCharLM"),
    ("rnnkit.scratch.charlm", "train", charlm.fit, "rnnkit.scratch.charlm.fit"),
    ("rnnkit.scratch.charlm", "TrainResult", charlm.FitResult, "rnnkit.scratch.charlm.FitResult"),
    ("rnnkit.scratch.parallel", "BatchSplit", fast.BatchSplit, "rnnkit.scratch.fast.BatchSplit"),
    ("rnnkit.scratch.parallel", "MIN_SLICE", fast.MIN_SLICE, "rnnkit.scratch.fast.MIN_SLICE"),
]


@pytest.mark.parametrize("module,old,new,message", OLD_NAMES, ids=[f"{m}.{o}" for m, o, _, _ in OLD_NAMES])
def test_old_name_warns_and_gives_the_new_object(module, old, new, message):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{old} is deprecated: use {message}$"):
        got = getattr(mod, old)
    assert got is new
    with pytest.warns(DeprecationWarning):  # the from-import form goes through the same hook
        exec(f"from {module} import {old}", {})


def test_old_import_lines_of_the_numpy_training_engine_still_run():
    """The imports src/rnnkit/train/engines.py had before the split, and the way it used them."""
    with pytest.warns(DeprecationWarning):
        from rnnkit.scratch.charlm import CharLM as ScratchLM
    with pytest.warns(DeprecationWarning):
        from rnnkit.scratch.parallel import BatchSplit
    from rnnkit.scratch.losses import cross_entropy_forward
    from rnnkit.scratch.optim import Adam, clip_grad_norm

    model = ScratchLM("abc", 4, cell="lstm", num_layers=2, dtype=np.float32, seed=0)
    opt = Adam(model.parameters(), lr=1e-2)
    x = np.array([[0, 1], [1, 2], [2, 0]])
    with BatchSplit(1) as split:
        loss, grads, state = split(model.loss_and_grads, x, np.roll(x, -1, axis=0), None)
    clip_grad_norm(grads, 5.0)
    opt.step(grads)
    logits, _, _ = model.forward(x, state)
    assert np.isfinite(loss) and np.isfinite(cross_entropy_forward(logits, x, reduction="sum")[0])


def test_old_train_still_trains():
    with pytest.warns(DeprecationWarning, match="use rnnkit.scratch.charlm.fit"):
        result = charlm.train("abcabcabc" * 20, hidden_size=8, seq_len=5, batch_size=4, steps=3)
    assert isinstance(result, charlm.FitResult) and len(result.losses) == 3


def test_unknown_names_still_raise_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        scratch.NoSuchThing  # noqa: B018
    with pytest.raises(AttributeError, match="rnnkit.scratch.charlm"):
        charlm.NoSuchThing  # noqa: B018
