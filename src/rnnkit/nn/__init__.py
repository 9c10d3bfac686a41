"""PyTorch modules: torch.nn-exact recurrent layers and cells, the Elman network, the general
recurrence, and the layers on rnnkit's fast path (layer norm, recurrent dropout, minGRU).

A map of the package, with the path of one call, is in docs/architecture.md.
"""

from rnnkit.nn.cells import GRUCell, LSTMCell, RNNCell, gru_step, lstm_step, rnn_step
from rnnkit.nn.elman import Elman
from rnnkit.nn.loop import scan
from rnnkit.nn.recurrent import Recurrent
from rnnkit.nn.rnn import GRU, LSTM, RNN, RNNBase

__all__ = [
    "RNN", "LSTM", "GRU", "RNNBase", "RNNCell", "LSTMCell", "GRUCell", "Elman", "Recurrent",
    "scan", "rnn_step", "lstm_step", "gru_step",
]
