"""The task models and the char LM, exported with dynamic batch and time (and source / target)."""

from __future__ import annotations

import torch
from export_helpers import SIZES, export_both

import rnnkit


def test_charlm_lstm_one_hot(folder):
    """embed_size=0: one-hot input (the run-folder tests cover the embedding)."""
    torch.manual_seed(0)
    model = rnnkit.CharLM(11, cell="lstm", hidden_size=6, num_layers=2, embed_size=0)

    def inputs(T, B, states=True):
        d = {"x": torch.randint(0, 11, (T, B))}
        return d | ({"h0": torch.randn(2, B, 6), "c0": torch.randn(2, B, 6)} if states else {})

    ex = export_both(model, folder, inputs(4, 3), name="charlm")
    for T, B in SIZES:
        ex.check(inputs(T, B), f"CharLM T={T} B={B}")
        ex.check(inputs(T, B, states=False), f"CharLM T={T} B={B} no state", pt2=False)


def test_tagger_bidirectional_gru_with_lengths(folder):
    torch.manual_seed(1)
    model = rnnkit.Tagger(4, 6, 3, cell="gru", bidirectional=True)

    def inputs(T, B, lengths=True):
        d = {"x": torch.randn(B, T, 4)}
        if lengths:
            d["lengths"] = torch.randint(1, T + 1, (B,))
            d["lengths"][-1] = T
        return d

    ex = export_both(model, folder, inputs(4, 3), name="tagger")
    for T, B in SIZES:
        ex.check(inputs(T, B), f"Tagger T={T} B={B}")
        ex.check(inputs(T, B, lengths=False), f"Tagger T={T} B={B} no lengths", pt2=False)


def test_classifier_bidirectional_lstm_on_token_ids(folder):
    torch.manual_seed(2)
    model = rnnkit.SequenceClassifier(4, 6, 3, cell="lstm", bidirectional=True, vocab_size=9)

    def inputs(T, B):
        lengths = torch.randint(1, T + 1, (B,))
        lengths[0] = T
        return {"x": torch.randint(0, 9, (B, T)), "lengths": lengths}

    ex = export_both(model, folder, inputs(4, 3), name="classifier")
    for T, B in SIZES:
        ex.check(inputs(T, B), f"SequenceClassifier T={T} B={B}")


def test_seq2seq(folder):
    torch.manual_seed(3)
    model = rnnkit.Seq2Seq(13, 6, 4, cell="lstm")

    def inputs(S, U, B):
        lengths = torch.randint(1, S + 1, (B,))
        lengths[0] = S
        return {"src": torch.randint(0, 13, (B, S)), "src_lengths": lengths,
                "tgt_in": torch.randint(0, 13, (B, U))}

    ex = export_both(model, folder, inputs(4, 5, 3), name="seq2seq")
    for (S, B), U in zip(SIZES, (2, 9, 1)):
        ex.check(inputs(S, U, B), f"Seq2Seq S={S} U={U} B={B}")
