"""Sequence classification from the final hidden state.

    h_T = RNN(x_1..x_T)                    top layer, last real step of each sequence
    logits = W [h_T^fwd ; h_1^bwd] + b     (B, D*H) -> (B, C)

For a sequence of length ``len_b`` padded to T, the forward direction's final state is its output at
step ``len_b - 1``; the backward direction reads the sequence from its end, so its final state is its
output at step 0. With ``num_classes=1`` and a mean-squared loss the same model is a regressor (the
adding problem).
"""

from __future__ import annotations

# ruff: noqa: F722 (jaxtyping shape strings such as "B T H" are not Python expressions)
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from rnnkit.models.tagger import make_rnn, run_rnn


def final_states(
    output: Float[Tensor, "B T DH"],
    lengths: Int[Tensor, " B"] | None = None,
    bidirectional: bool = False,
) -> Float[Tensor, "B DH"]:
    """The top layer's final state of each sequence, taken from a batch-first output.

    Forward half: ``output[b, len_b - 1, :H]``; backward half (bidirectional): ``output[b, 0, H:]``.
    Equal to ``h_n`` of the top layer, concatenated over directions, for any cell.
    """
    B, T, DH = output.shape
    if lengths is None:
        last = torch.full((B,), T - 1, dtype=torch.long, device=output.device)
    else:
        last = torch.as_tensor(lengths, device=output.device).long() - 1
        if last.shape != (B,) or int(last.min()) < 0 or int(last.max()) >= T:
            raise ValueError(f"lengths must hold {B} values in [1, {T}], got {lengths}")
    forward = output[torch.arange(B, device=output.device), last]  # (B, D*H)
    if not bidirectional:
        return forward
    if DH % 2:
        raise ValueError(f"a bidirectional output has an even feature size, got {DH}")
    H = DH // 2
    return torch.cat([forward[:, :H], output[:, 0, H:]], dim=1)  # (B, 2H)


class SequenceClassifier(nn.Module):
    """Whole-sequence classifier: ``(B, T, I) -> (B, C)`` from the final hidden state."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_classes: int,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        vocab_size: int | None = None,
    ):
        super().__init__()
        self.cell = cell
        self.bidirectional = bidirectional
        self.embed = nn.Embedding(vocab_size, input_size) if vocab_size else None
        self.rnn = make_rnn(cell, input_size, hidden_size, num_layers, bidirectional, dropout)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, x: Tensor, lengths: Int[Tensor, " B"] | None = None) -> Float[Tensor, "B C"]:
        if self.embed is not None:
            if x.dim() != 2:
                raise ValueError(f"expected token ids of shape (B, T), got shape {tuple(x.shape)}")
            x = self.embed(x)  # (B, T, I)
        elif x.dim() != 3:
            raise ValueError(f"expected input of shape (B, T, I), got shape {tuple(x.shape)}")
        out, _ = run_rnn(self.rnn, x, lengths=lengths)  # (B, T, D*H)
        return self.head(final_states(out, lengths, self.bidirectional))  # (B, C)
