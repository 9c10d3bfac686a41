"""Masked per-step cross-entropy equals the loss computed on each unpadded sequence alone."""

import pytest
import torch
import torch.nn.functional as F

from rnnkit.models.tagger import Tagger
from rnnkit.tasks.losses import IGNORE_INDEX, lengths_to_mask, masked_cross_entropy, pad_targets

LENGTHS = [5, 2, 7, 1]


def _padded_batch(seed=0, I=3, C=4):
    g = torch.Generator().manual_seed(seed)
    B, T = len(LENGTHS), max(LENGTHS)
    x = torch.randn(B, T, I, generator=g, dtype=torch.double)
    y = torch.randint(0, C, (B, T), generator=g)
    # garbage in the padding: the loss must not look at it
    for b, n in enumerate(LENGTHS):
        x[b, n:] = 1e3
    return x, y


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_masked_loss_equals_per_sequence_loss(cell, bidirectional):
    torch.manual_seed(0)
    model = Tagger(3, 5, 4, cell=cell, num_layers=2, bidirectional=bidirectional).double()
    x, y = _padded_batch()
    lengths = torch.tensor(LENGTHS)
    loss = masked_cross_entropy(model(x, lengths), y, lengths=lengths)

    # oracle: every sequence on its own, unpadded, summed, divided by the number of real steps
    total = sum(
        F.cross_entropy(model(x[b : b + 1, :n])[0], y[b, :n], reduction="sum") for b, n in enumerate(LENGTHS)
    )
    expected = total / sum(LENGTHS)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)

    # the same loss from a mask, or from targets already padded with ignore_index
    mask = lengths_to_mask(lengths, x.size(1))
    torch.testing.assert_close(masked_cross_entropy(model(x, lengths), y, mask=mask), expected)
    torch.testing.assert_close(masked_cross_entropy(model(x, lengths), pad_targets(y, lengths)), expected)


def test_gradient_ignores_padding():
    torch.manual_seed(1)
    logits = torch.randn(4, 7, 3, requires_grad=True)
    y = torch.randint(0, 3, (4, 7))
    masked_cross_entropy(logits, y, lengths=LENGTHS).backward()
    mask = lengths_to_mask(LENGTHS)
    assert logits.grad[~mask].abs().max() == 0
    assert (logits.grad[mask].abs().sum(-1) > 0).all()


def test_sum_reduction_and_mask_values():
    assert lengths_to_mask([2, 0, 3]).tolist() == [[True, True, False], [False, False, False], [True, True, True]]
    logits = torch.zeros(1, 3, 4)  # uniform: log 4 per real step
    y = torch.tensor([[1, 2, 3]])
    total = masked_cross_entropy(logits, y, lengths=[2], reduction="sum")
    torch.testing.assert_close(total, torch.tensor(2 * torch.log(torch.tensor(4.0)).item()))
    assert pad_targets(y, [1]).tolist() == [[1, IGNORE_INDEX, IGNORE_INDEX]]


def test_bad_shapes_say_expected_and_got():
    with pytest.raises(ValueError, match=r"Expected \(2, 3\), got \(2, 4\)"):
        masked_cross_entropy(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="not both"):
        pad_targets(torch.zeros(1, 2, dtype=torch.long), lengths=[1], mask=torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, T, C\)"):
        masked_cross_entropy(torch.zeros(6, 5), torch.zeros(6, dtype=torch.long))
