"""make_rnn builds rnnkit's drop-in layer from a cell name."""


import pytest
import torch

import rnnkit
from rnnkit.models.build import make_rnn


@pytest.mark.parametrize("cell, cls", [("rnn", rnnkit.RNN), ("lstm", rnnkit.LSTM), ("GRU", rnnkit.GRU)])
def test_make_rnn_builds_rnnkits_layer(cell, cls):
    layer = make_rnn(cell, 3, 5, 2, bidirectional=True, dropout=0.25, batch_first=True)
    assert type(layer) is cls
    assert (layer.input_size, layer.hidden_size, layer.num_layers) == (3, 5, 2)
    assert layer.bidirectional and layer.batch_first and layer.dropout == 0.25
    assert make_rnn(cell, 3, 5, 1, dropout=0.25).dropout == 0.0  # one layer: nothing between layers
    assert make_rnn(cell, 3, 5)(torch.zeros(4, 2, 3))[0].shape == (4, 2, 5)


def test_make_rnn_says_what_was_expected():
    with pytest.raises(ValueError, match="cell must be one of rnn, lstm, gru; got 'tcn'"):
        make_rnn("tcn", 3, 4)
    with pytest.raises(ValueError, match="hidden_size must be greater than zero, got 0"):
        make_rnn("gru", 3, 0)
    with pytest.raises(TypeError, match="num_layers should be of type int, got: float"):
        make_rnn("gru", 3, 4, 2.0)
