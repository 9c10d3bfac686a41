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
from torch import Tensor

from rnnkit.models.tagger import Tagger
from rnnkit.nn._checks import check_lengths


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
        last = check_lengths(lengths, B, T, output.device) - 1
    forward = output[torch.arange(B, device=output.device), last]  # (B, D*H)
    if not bidirectional:
        return forward
    if DH % 2:
        raise ValueError(f"a bidirectional output has an even feature size, got {DH}")
    H = DH // 2
    return torch.cat([forward[:, :H], output[:, 0, H:]], dim=1)  # (B, 2H)


class SequenceClassifier(Tagger):
    """Whole-sequence classifier: ``(B, T, I) -> (B, C)`` from the final hidden state.

    Same constructor as `Tagger`; the head reads `final_states` instead of every step.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bidirectional = self.rnn.bidirectional

    def forward(self, x: Tensor, lengths: Int[Tensor, " B"] | None = None) -> Float[Tensor, "B C"]:
        out = self.encode(x, lengths)  # (B, T, D*H)
        return self.head(final_states(out, lengths, self.bidirectional))  # (B, C)
