"""PyTorch modules: torch.nn-exact recurrent layers and cells, the Elman network, the general recurrence."""

from rnnkit.nn.cells import GRUCell, LSTMCell, RNNCell, gru_step, lstm_step, rnn_step
from rnnkit.nn.elman import Elman
from rnnkit.nn.layers import GRU, LSTM, RNN, RNNBase
from rnnkit.nn.loop import scan
from rnnkit.nn.recurrent import Recurrent

__all__ = [
    "RNN", "LSTM", "GRU", "RNNBase", "RNNCell", "LSTMCell", "GRUCell", "Elman", "Recurrent",
    "scan", "rnn_step", "lstm_step", "gru_step",
]
