"""Exportable programs for the task models and the character language model.

Each repeats its model's eval-mode forward with the recurrent layer replaced by a
`StackProgram`, and without the data-dependent checks of the eager
forward (``int(lengths.min())`` would fix the lengths into the graph): `rnnkit.export.to_onnx`
and `to_pt2` run the eager model on the example first, so those checks still
run once, before any work.

Inputs and outputs (B batch, T time, S source, U target, V vocabulary, C classes):

* ``CharLM``: (x (T, B) ids, h0, [c0]) -> (logits (T, B, V), h_n, [c_n]); streaming x_t (B,) ids.
* ``Tagger``: (x (B, T, I) or (B, T) ids, lengths) -> logits (B, T, C)
* ``SequenceClassifier``: (x, lengths) -> logits (B, C), from each sequence's final state
* ``Seq2Seq``: (src (B, S), src_lengths, tgt_in (B, U)) -> logits (B, U, V), teacher-forced
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.export.programs import Program, Slot, StackProgram, flatten


def _ids(vocab: int, shape):
    return lambda T, B: torch.randint(0, vocab, shape(T, B))


def _full_lengths(T, B):
    return torch.full((B,), T, dtype=torch.long)


class CharLMProgram(Program):
    """``CharLM``: ``logits, state = model(x, state)``; streaming: one character per sequence."""

    def __init__(self, model, target: str = "pt2", streaming: bool = False) -> None:
        super().__init__(model, target, streaming)
        self.model = model
        self.rnn = StackProgram(model.rnn, target, streaming)
        V = model.vocab_size
        if streaming:
            self.slots = [Slot("x_t", "data", {0: "B"}, _ids(V, lambda T, B: (B,)))]
            self.time_axis = None
        else:
            self.slots = [Slot("x", "data", {0: "T", 1: "B"}, _ids(V, lambda T, B: (T, B)))]
        self.slots += [s for s in self.rnn.slots if s.role == "state"]
        self.outputs = ["logits_t" if streaming else "logits", *self.rnn.outputs[1:]]

    def eager(self, inputs):
        names = ("h0", "c0")[: self.rnn.stack.n_state]
        state = None if inputs.get("h0") is None else tuple(inputs[n] for n in names)
        if self.streaming:
            logits, state = self.model(inputs["x_t"].unsqueeze(0), state)
            return (logits.squeeze(0), *state)
        return flatten(self.model(inputs["x"], state))

    def run(self, x: Tensor, *states):
        m = self.model
        e = m.embed(x) if m.embed is not None else F.one_hot(x, m.vocab_size).to(m.head.weight.dtype)
        y, *h_n = self.rnn(e, *states)  # (T, B, H) or streaming (B, H)
        return (m.head(y), *h_n)


class TaggerProgram(Program):
    """``Tagger`` (per-step logits) and ``SequenceClassifier`` (logits from the final states)."""

    def __init__(self, model, target: str = "pt2", streaming: bool = False) -> None:
        if streaming:
            raise ValueError(f"{type(model).__name__} has no streaming form: it reads whole "
                             "sequences (export it without streaming)")
        super().__init__(model, target, streaming)
        self.model = model
        self.rnn = StackProgram(model.rnn, target)
        self.time_axis = 1
        self.classify = hasattr(model, "bidirectional")  # SequenceClassifier
        if model.embed is not None:
            x = Slot("x", "data", {0: "B", 1: "T"},
                     _ids(model.embed.num_embeddings, lambda T, B: (B, T)))
        else:
            I = model.rnn.input_size
            x = Slot("x", "data", {0: "B", 1: "T"}, lambda T, B: torch.randn(B, T, I))
        self.slots = [x, Slot("lengths", "lengths", {0: "B"}, _full_lengths)]
        self.outputs = ["logits"]

    def eager(self, inputs):
        return flatten(self.model(inputs["x"], inputs.get("lengths")))

    def run(self, x: Tensor, lengths: Tensor | None = None):
        m = self.model
        if m.embed is not None:
            x = m.embed(x)  # (B, T, I)
        out = self.rnn(x, None, *(() if m.rnn.mode != "LSTM" else (None,)), lengths)[0]
        if not self.classify:
            return (m.head(out),)  # (B, T, C)
        B, T = out.shape[0], out.shape[1]
        last = lengths - 1 if lengths is not None else torch.full((B,), T - 1, dtype=torch.long)
        final = out[torch.arange(B), last]  # (B, D*H): the forward direction's last valid output
        if m.bidirectional:  # the reverse direction ends at step 0
            H = out.shape[2] // 2
            final = torch.cat([final[:, :H], out[:, 0, H:]], dim=1)
        return (m.head(final),)  # (B, C)


class Seq2SeqProgram(Program):
    """``Seq2Seq`` with teacher forcing: the encoder's final state starts the decoder."""

    def __init__(self, model, target: str = "pt2", streaming: bool = False) -> None:
        if streaming:
            raise ValueError("Seq2Seq has no streaming form here: export its teacher-forced "
                             "forward (without streaming)")
        super().__init__(model, target, streaming)
        self.model = model
        self.encoder = StackProgram(model.encoder, target)
        self.decoder = StackProgram(model.decoder, target)
        self.time_axis = 1
        V = model.vocab_size
        self.slots = [
            Slot("src", "data", {0: "B", 1: "S"}, _ids(V, lambda T, B: (B, T))),
            Slot("src_lengths", "lengths", {0: "B"}, _full_lengths),
            Slot("tgt_in", "data", {0: "B", 1: "U"}, _ids(V, lambda T, B: (B, T + 1))),
        ]
        self.outputs = ["logits"]

    def eager(self, inputs):
        return flatten(self.model(inputs["src"], inputs.get("src_lengths"), inputs["tgt_in"]))

    def run(self, src: Tensor, src_lengths: Tensor | None, tgt_in: Tensor):
        m = self.model
        n_state = 2 if m.encoder.mode == "LSTM" else 1
        _, *state = self.encoder(m.embed(src), *(None,) * n_state, src_lengths)
        out = self.decoder(m.embed(tgt_in), *state, None)[0]  # (B, U, H)
        return (m.head(out),)  # (B, U, V)
