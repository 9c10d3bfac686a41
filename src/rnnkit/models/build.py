"""The one place the task models build their recurrent layer from a cell name.

``make_rnn("lstm", I, H, num_layers, bidirectional=..., dropout=..., batch_first=...)`` returns
rnnkit's drop-in for ``torch.nn.LSTM`` (likewise ``"gru"``, and ``"rnn"`` for Elman with tanh),
so the char LM (time-major), the tagger, classifier and seq2seq (batch-first) all get the same
layers, and a change of layer class happens here only.
"""

from __future__ import annotations

from torch import nn

from rnnkit.checks import check_choice, check_positive_int

#: the cell names a task model is built from (``rnnkit.scratch.charlm`` takes the same names)
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
    check_choice("cell", cell.lower() if isinstance(cell, str) else cell, CELLS)
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers)):
        check_positive_int(name, value)
    return classes[cell.lower()](
        input_size, hidden_size, num_layers, batch_first=batch_first,
        bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0,
    )
