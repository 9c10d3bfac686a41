"""The one place the task models build their recurrent layer from a cell name.

``make_rnn("lstm", I, H, num_layers, bidirectional=..., dropout=..., batch_first=...)`` returns
rnnkit's drop-in for ``torch.nn.LSTM`` (likewise ``"gru"``, and ``"rnn"`` for Elman with tanh),
so the char LM (time-major), the tagger, classifier and seq2seq (batch-first) all get the same
layers, and a change of layer class happens here only.
"""

from __future__ import annotations

from torch import nn

CELLS = ("rnn", "lstm", "gru")


def make_rnn(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    *,
    bidirectional: bool = False,
    dropout: float = 0.0,
    batch_first: bool = False,
) -> nn.Module:
    """A recurrent layer: ``cell`` is ``"rnn"`` (Elman, tanh), ``"lstm"`` or ``"gru"``.

    ``dropout`` acts between stacked layers only, as in torch.nn, so with one layer it is dropped
    here rather than left to warn.
    """
    from rnnkit.nn import GRU, LSTM, RNN

    classes = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
    if not isinstance(cell, str) or cell.lower() not in classes:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}; got {cell!r}")
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return classes[cell.lower()](
        input_size, hidden_size, num_layers, batch_first=batch_first,
        bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0,
    )
