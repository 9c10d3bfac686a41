"""Encoder-decoder (sequence to sequence) with recurrent layers (Sutskever et al. 2014; Cho et al. 2014).

    encoder:  s = final state of RNN_enc(embed(x_1..x_S))          (every layer; (h, c) for an LSTM)
    decoder:  h_0 = s,  h_u = RNN_dec(embed(y_{u-1}), h_{u-1}),  p(y_u | y_<u, x) = softmax(W h_u + b)

Training uses teacher forcing: the decoder reads the true previous token ``y_{u-1}`` (``y_0 = BOS``)
and all U steps run as one batch. Inference is greedy: feed back the most likely token, one step at
a time, until every sequence has produced EOS or ``max_len`` tokens.

Shapes: B batch, S source length, U target length, E embedding, H hidden, V vocabulary. Token ids are
shared by source and target (one vocabulary); ``pad_id`` fills the end of shorter sequences.
"""

from __future__ import annotations

# ruff: noqa: F722 (jaxtyping shape strings such as "B T H" are not Python expressions)
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from rnnkit.models.build import make_rnn
from rnnkit.models.tagger import run_rnn


class Seq2Seq(nn.Module):
    """The encoder's final state initialises a decoder of the same cell, width and depth."""

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 128,
        embed_size: int = 32,
        cell: str = "gru",
        num_layers: int = 1,
        dropout: float = 0.0,
        bos_id: int = 1,
        eos_id: int = 2,
        pad_id: int = 0,
    ):
        super().__init__()
        for name, tid in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
            if not 0 <= tid < vocab_size:
                raise ValueError(f"{name} must lie in [0, vocab_size={vocab_size}), got {tid}")
        self.vocab_size, self.bos_id, self.eos_id, self.pad_id = vocab_size, bos_id, eos_id, pad_id
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.encoder = make_rnn(cell, embed_size, hidden_size, num_layers, dropout=dropout, batch_first=True)
        self.decoder = make_rnn(cell, embed_size, hidden_size, num_layers, dropout=dropout, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def encode(self, src: Int[Tensor, "B S"], src_lengths: Int[Tensor, " B"] | None = None):
        """The encoder's final state at each source's last real token: h_n, or (h_n, c_n) for an LSTM."""
        if src.dim() != 2:
            raise ValueError(f"expected source token ids of shape (B, S), got shape {tuple(src.shape)}")
        _, state = run_rnn(self.encoder, self.embed(src), lengths=src_lengths)
        return state

    def forward(
        self,
        src: Int[Tensor, "B S"],
        src_lengths: Int[Tensor, " B"] | None,
        tgt_in: Int[Tensor, "B U"],
    ) -> Float[Tensor, "B U V"]:
        """Teacher-forced logits: step u reads ``tgt_in[:, u]`` (BOS first, then the true tokens)."""
        if tgt_in.dim() != 2 or tgt_in.size(0) != src.size(0):
            raise ValueError(
                f"expected decoder input of shape (B={src.size(0)}, U), got shape {tuple(tgt_in.shape)}"
            )
        state = self.encode(src, src_lengths)
        # The decoder runs without lengths: it is causal, so padding at the end of a target cannot
        # change the logits before it, and the loss ignores the padded steps.
        out, _ = run_rnn(self.decoder, self.embed(tgt_in), state)  # (B, U, H)
        return self.head(out)  # (B, U, V)

    @torch.no_grad()
    def greedy_decode(
        self,
        src: Int[Tensor, "B S"],
        src_lengths: Int[Tensor, " B"] | None = None,
        max_len: int = 32,
        keep_eos: bool = False,
    ) -> Int[Tensor, "B U"]:
        """Greedy decoding: the argmax token is fed back until EOS.

        The result is padded with ``pad_id`` after each sequence's end (EOS itself is dropped unless
        ``keep_eos``); U <= ``max_len``.
        """
        state = self.encode(src, src_lengths)
        B = src.size(0)
        token = torch.full((B, 1), self.bos_id, dtype=torch.long, device=src.device)  # (B, 1)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        tokens = []
        for _ in range(max_len):
            out, state = run_rnn(self.decoder, self.embed(token), state)  # (B, 1, H)
            token = self.head(out).argmax(-1)  # (B, 1)
            ended = done | (token[:, 0] == self.eos_id)
            tokens.append(token[:, 0].masked_fill(done if keep_eos else ended, self.pad_id))
            done = ended
            if bool(done.all()):
                break
        return torch.stack(tokens, dim=1) if tokens else torch.empty(B, 0, dtype=torch.long)
