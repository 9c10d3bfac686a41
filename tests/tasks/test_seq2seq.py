"""Encoder-decoder: teacher forcing, greedy decoding, overfitting a tiny set exactly."""

import pytest
import torch

from rnnkit.models.seq2seq import Seq2Seq
from rnnkit.tasks.train_transduction import (
    TransductionConfig,
    exact_match,
    seq2seq_loss,
    train_transduction,
)
from rnnkit.tasks.transduction import EOS, PAD, VOCAB_SIZE, make_transduction_batch

TINY = [[1, 2, 3], [4, 0], [9, 9, 1, 5], [7], [3, 8, 6], [0, 5, 2, 4]]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_overfits_a_tiny_set_exactly(cell):
    batch = make_transduction_batch("reverse", TINY)
    config = TransductionConfig(cell=cell, hidden_size=32, embed_size=16, steps=300, lr=1e-2,
                                eval_every=25, target=1.0)
    model, result = train_transduction(config, data=lambda step: batch, eval_batch=batch)
    assert result.exact_match == 1.0
    pred = model.greedy_decode(batch.src, batch.src_lengths, max_len=6)
    for b, src in enumerate(TINY):
        n = len(src)
        assert pred[b, :n].tolist() == [3 + d for d in reversed(src)]
        assert (pred[b, n:] == PAD).all()  # EOS ends the output


def test_teacher_forcing_is_causal_and_uses_the_encoder_state():
    torch.manual_seed(0)
    model = Seq2Seq(VOCAB_SIZE, hidden_size=8, embed_size=4, cell="lstm").double()
    batch = make_transduction_batch("reverse", [[1, 2, 3], [4]])
    logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    assert logits.shape == (2, 4, VOCAB_SIZE)
    # changing a later decoder input leaves earlier logits alone
    tgt = batch.tgt_in.clone()
    tgt[0, 3] = 7
    torch.testing.assert_close(model(batch.src, batch.src_lengths, tgt)[0, :3], logits[0, :3])
    # padding after the second source's end changes nothing; its content does
    src = batch.src.clone()
    src[1, 1:] = 9
    torch.testing.assert_close(model(src, batch.src_lengths, batch.tgt_in), logits)
    src[1, 0] = 9
    assert not torch.allclose(model(src, batch.src_lengths, batch.tgt_in)[1], logits[1])
    assert seq2seq_loss(model, batch).ndim == 0


def test_greedy_stops_at_eos_and_exact_match_counts_whole_strings():
    torch.manual_seed(0)
    model = Seq2Seq(VOCAB_SIZE, hidden_size=8, embed_size=4)
    with torch.no_grad():  # a decoder that always says EOS
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[EOS] = 1.0
    batch = make_transduction_batch("reverse", [[1, 2], [3]])
    pred = model.greedy_decode(batch.src, batch.src_lengths, max_len=5)
    assert pred.shape == (2, 1) and (pred == PAD).all()
    assert exact_match(model, batch) == (0.0, 0.0)


def test_bad_input():
    with pytest.raises(ValueError, match="bos_id must lie in"):
        Seq2Seq(5, bos_id=7)
    with pytest.raises(ValueError, match="cell must be one of"):
        TransductionConfig(cell="tcn")
    with pytest.raises(ValueError, match=r"expected source token ids of shape \(B, S\)"):
        Seq2Seq(VOCAB_SIZE).encode(torch.zeros(2, 3, 4, dtype=torch.long))


@pytest.mark.slow
def test_reverse_reaches_95_percent_exact_match():
    model, result = train_transduction(TransductionConfig(target=0.95))
    assert result.exact_match >= 0.95
