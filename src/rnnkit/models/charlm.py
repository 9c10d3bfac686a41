"""The character language model: embedding -> recurrent layers -> linear map to the vocabulary.

    e_t = E[x_t]                            (B, E)   (embed_size 0: e_t = onehot(x_t), (B, V))
    h_t, s_t = RNN(e_t, s_{t-1})            (B, H)   LSTM, GRU or Elman (tanh); num_layers deep
    logits_t = W dropout(h_t) + b           (B, V)
    loss = mean over t, b of  -log softmax(logits_t)[x_{t+1}]          nats per character

Shapes: T time, B batch, E embedding, H hidden, V vocabulary. Everything is time-major (T, B, ...),
the layout of PyTorch's fused recurrent kernels. The state ``s`` is a tuple of tensors
(L, B, H): ``(h, c)`` for an LSTM, ``(h,)`` otherwise, so callers treat every cell alike.

With ``embed_size=0`` the input is one-hot and ``weight_ih_l0`` plays the embedding's part; that is
the model the NumPy engine (`rnnkit.scratch.charlm`) trains, so its weights load here unchanged.
"""

# ruff: noqa: F722 (jaxtyping shape strings such as "T B" are not Python expressions)
from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from rnnkit.checks import check_int, check_probability
from rnnkit.models.build import make_rnn

State = tuple[Tensor, ...]


class CharLM(nn.Module):
    """Next-character model. ``forward(x (T, B) ids, state) -> (logits (T, B, V), state)``."""

    def __init__(self, vocab_size: int, *, cell: str = "lstm", hidden_size: int = 256,
                 num_layers: int = 1, embed_size: int = 64, dropout: float = 0.0):
        super().__init__()
        for name, value, low in (("vocab_size", vocab_size, 2), ("hidden_size", hidden_size, 1),
                                 ("num_layers", num_layers, 1), ("embed_size", embed_size, 0)):
            check_int(name, value, low)
        check_probability("dropout", dropout)
        self.vocab_size, self.cell, self.hidden_size = vocab_size, cell, hidden_size
        self.num_layers, self.embed_size, self.dropout = num_layers, embed_size, dropout
        self.embed = nn.Embedding(vocab_size, embed_size) if embed_size else None
        self.rnn = make_rnn(cell, embed_size or vocab_size, hidden_size, num_layers, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def shape(self) -> dict:
        """What fixes the parameter shapes: a checkpoint loads only into a model with the same."""
        return {"vocab_size": self.vocab_size, "cell": self.cell, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "embed_size": self.embed_size}

    def initial_state(self, batch_size: int, device=None) -> State:
        """The zero state: (h, c) for an LSTM, (h,) otherwise; each (L, B, H)."""
        w = self.head.weight
        zeros = torch.zeros(self.num_layers, batch_size, self.hidden_size, dtype=w.dtype,
                            device=device if device is not None else w.device)
        return (zeros, zeros.clone()) if self.cell == "lstm" else (zeros,)

    def forward(
        self, x: Int[Tensor, "T B"], state: State | None = None
    ) -> tuple[Float[Tensor, "T B V"], State]:
        if x.dim() != 2:
            raise ValueError(f"x must be (T, B) character ids, got shape {tuple(x.shape)}")
        if self.embed is not None:
            e = self.embed(x)  # (T, B, E)
        else:
            e = F.one_hot(x, self.vocab_size).to(self.head.weight.dtype)  # (T, B, V)
        if state is None:
            state = self.initial_state(x.size(1), x.device)
        h, s = self.rnn(e, state if self.cell == "lstm" else state[0])  # (T, B, H)
        s = tuple(s) if self.cell == "lstm" else (s,)
        return self.head(self.drop(h)), s  # (T, B, V)


def detach_state(state: State) -> State:
    """The same values, cut from the graph: backpropagation stops at the window edge."""
    return tuple(s.detach() for s in state)


def loss_fn(logits: Float[Tensor, "T B V"], y: Int[Tensor, "T B"],
            reduction: str = "mean") -> Tensor:
    """Cross-entropy in nats per character, in float32 at least (bf16 logits are widened)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction=reduction)
