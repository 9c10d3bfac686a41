"""Per-time-step classification (tagging): one label for every step of a sequence.

    h_t = RNN(x_t, h_{t-1})            (every layer; for a bidirectional RNN h_t = [h_t^fwd ; h_t^bwd])
    logits_t = W h_t + b               (B, T, D*H) -> (B, T, C)

Shapes: B batch, T time, I input features (or token ids when ``vocab_size`` is given), H hidden,
D = 2 if bidirectional else 1, C classes. Padded steps (``t >= lengths[b]``) get logits too; the loss
ignores them (`rnnkit.tasks.losses.masked_cross_entropy`).

The recurrent layer comes from `rnnkit.models.build.make_rnn`, batch-first.
"""

from __future__ import annotations

# ruff: noqa: F722 (jaxtyping shape strings such as "B T H" are not Python expressions)
from jaxtyping import Float, Int
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit.models.build import CELLS, make_rnn  # noqa: F401 (CELLS: re-exported for the tasks)
from rnnkit.nn._checks import check_lengths


def run_rnn(
    rnn: nn.Module,
    x: Float[Tensor, "B T I"],
    hx=None,
    lengths: Int[Tensor, " B"] | None = None,
):
    """Run a batch-first recurrent layer, honouring per-sequence ``lengths``.

    Returns ``(output (B, T, D*H), h_n)`` like torch.nn; with lengths, ``output`` is zero past each
    sequence's end and ``h_n`` holds the state at its last real step (the first step for the reverse
    direction). torch.nn layers get a packed sequence; other layers (rnnkit.nn) take ``lengths=``.
    """
    if lengths is None:
        return rnn(x, hx)
    lengths = check_lengths(lengths, x.size(0), x.size(1), x.device)  # (B,) int64 in [1, T]
    if type(rnn).__module__.startswith("torch."):
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = rnn(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return out, h_n
    return rnn(x, hx, lengths=lengths)


class Tagger(nn.Module):
    """Per-step classifier: ``(B, T, I) -> (B, T, C)`` logits (``(B, T)`` ids if ``vocab_size``)."""

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
        # With a vocabulary the inputs are token ids and input_size is the embedding width.
        self.embed = nn.Embedding(vocab_size, input_size) if vocab_size else None
        self.rnn = make_rnn(cell, input_size, hidden_size, num_layers, bidirectional=bidirectional,
                            dropout=dropout, batch_first=True)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def encode(self, x: Tensor, lengths: Int[Tensor, " B"] | None = None) -> Float[Tensor, "B T DH"]:
        """The recurrent layer's output at every step, (B, T, D*H) (zero past each length)."""
        if self.embed is not None:
            if x.dim() != 2:
                raise ValueError(f"expected token ids of shape (B, T), got shape {tuple(x.shape)}")
            x = self.embed(x)  # (B, T, I)
        elif x.dim() != 3:
            raise ValueError(f"expected input of shape (B, T, I), got shape {tuple(x.shape)}")
        out, _ = run_rnn(self.rnn, x, lengths=lengths)  # (B, T, D*H)
        return out

    def forward(self, x: Tensor, lengths: Int[Tensor, " B"] | None = None) -> Float[Tensor, "B T C"]:
        return self.head(self.encode(x, lengths))  # (B, T, C)
