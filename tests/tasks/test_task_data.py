"""The synthetic data: adding problem, copy task, digit transductions, and their baselines."""

import math

import pytest
import torch

from rnnkit.tasks.adding import BASELINE_MSE, adding_batch
from rnnkit.tasks.copying import BLANK, DELIMITER, copy_baseline, copy_batch
from rnnkit.tasks.losses import masked_cross_entropy
from rnnkit.tasks.transduction import (
    BOS,
    EOS,
    PAD,
    decode_digits,
    encode_digits,
    make_transduction_batch,
    transduction_batch,
)


def test_adding_layout():
    x, y = adding_batch(64, 11, torch.Generator().manual_seed(0))
    assert x.shape == (64, 11, 2) and y.shape == (64,)
    markers = x[:, :, 1]
    assert (markers.sum(1) == 2).all()
    assert (markers[:, :5].sum(1) == 1).all() and (markers[:, 5:].sum(1) == 1).all()  # one per half
    torch.testing.assert_close((x[:, :, 0] * markers).sum(1), y)


def test_adding_baseline_is_one_sixth_not_0_1767():
    # always predicting 1.0: MSE = Var(U1 + U2) = 2/12; measured on 400k sequences (std err ~4e-4)
    _, y = adding_batch(400_000, 4, torch.Generator().manual_seed(1))
    mse = float(((y - 1.0) ** 2).mean())
    assert abs(mse - 1 / 6) < 2e-3
    assert abs(mse - 0.1767) > 5e-3
    assert BASELINE_MSE == pytest.approx(1 / 6)


def test_copy_layout():
    x, y = copy_batch(8, delay=5, num_symbols=3, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 11)  # T + 2K
    assert ((x[:, :3] >= 1) & (x[:, :3] <= 8)).all()
    assert (x[:, 3:7] == BLANK).all() and (x[:, 7] == DELIMITER).all() and (x[:, 8:] == BLANK).all()
    assert (y[:, :8] == BLANK).all() and (y[:, 8:] == x[:, :3]).all()


def test_copy_baseline_is_the_memoryless_cross_entropy():
    T, K = 30, 10
    _, y = copy_batch(16, T, K, torch.Generator().manual_seed(0))
    # blank (certain) for T + K steps, then uniform over the 8 data symbols
    logits = torch.full((16, T + 2 * K, 10), -1e4)
    logits[:, : T + K, BLANK] = 0.0
    logits[:, T + K :, 1:9] = 0.0
    ce = float(masked_cross_entropy(logits, y))
    assert ce == pytest.approx(copy_baseline(T, K), rel=1e-6)
    assert copy_baseline(100) == pytest.approx(10 * math.log(8) / 120)


def test_transduction_batch():
    b = make_transduction_batch("reverse", [[1, 2, 3], [7]])
    assert b.src.tolist() == [[4, 5, 6], [10, PAD, PAD]]
    assert b.src_lengths.tolist() == [3, 1]
    assert b.tgt_in.tolist() == [[BOS, 6, 5, 4], [BOS, 10, PAD, PAD]]
    assert b.tgt_out.tolist() == [[6, 5, 4, EOS], [10, EOS, -100, -100]]
    assert decode_digits(make_transduction_batch("sort", [[3, 1, 2]]).tgt_out[0]) == "123"
    assert decode_digits(encode_digits("0907")) == "0907"
    r = transduction_batch("reverse", 32, 2, 5, torch.Generator().manual_seed(0))
    assert r.src_lengths.min() >= 2 and r.src_lengths.max() <= 5


def test_bad_task_input():
    with pytest.raises(ValueError, match="length must be at least 2, got 1"):
        adding_batch(4, 1)
    with pytest.raises(ValueError, match="delay must be greater than zero, got 0"):
        copy_batch(4, 0)
    with pytest.raises(ValueError, match="one of reverse, sort; got 'shuffle'"):
        make_transduction_batch("shuffle", [[1]])
    with pytest.raises(ValueError, match="expected a string of digits"):
        encode_digits("12a")
