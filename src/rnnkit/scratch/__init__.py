"""rnnkit.scratch: recurrent networks in NumPy alone, with hand-written backpropagation through time.

The reference implementation: readable, checked by finite differences, equal to torch.nn autograd
on the same weights, and needing only NumPy (this package never imports torch). Derivations of
every backward formula: docs/bptt.md.

    from rnnkit import scratch
    lstm = scratch.LSTM(input_size, hidden_size, num_layers=2, bidirectional=True, seed=0)
    output, (h_n, c_n), cache = lstm.forward(x)                       # x (T, B, I)
    d_x, (d_h0, d_c0), grads = lstm.backward(d_output, cache)         # grads keyed like state_dict
    lstm.load_state_dict(torch_lstm.state_dict())                     # tensors or arrays

Contents: cells (``rnn_step``, ``lstm_step``, ``gru_step`` and their backward; ``RNNCell``,
``LSTMCell``, ``GRUCell``), layers (``RNN``, ``LSTM``, ``GRU``, which call those steps once per time
step), the Elman network (``Elman``), truncated BPTT (``bptt_chunks``, ``tbptt``), losses,
optimisers and clipping, ``gradcheck``, and a character language model (``charlm``:
``NumpyCharLM``, ``fit``). ``rnnkit.scratch.fast`` is the speed-tuned engine that computes the same
numbers (``fast.LSTM``, ``fast.FastNumpyCharLM``, ``fast.BatchSplit``, ...); one test ties each
tuned piece to its textbook one. Old names (``CharLM``, ``BatchSplit`` here) still work and warn.
"""

from rnnkit.scratch import charlm, fast
from rnnkit.scratch.cells import GRUCell, LSTMCell, RNNCell
from rnnkit.scratch.charlm import NumpyCharLM
from rnnkit.scratch.deprecation import renamed
from rnnkit.scratch.elman import Elman
from rnnkit.scratch.finite_differences import gradcheck
from rnnkit.scratch.gru_cell import gru_step, gru_step_backward
from rnnkit.scratch.losses import (
    cross_entropy,
    cross_entropy_backward,
    cross_entropy_forward,
    log_softmax,
    mse,
    mse_backward,
    mse_forward,
    softmax,
)
from rnnkit.scratch.lstm_cell import lstm_step, lstm_step_backward
from rnnkit.scratch.module import Module
from rnnkit.scratch.optim import SGD, Adagrad, Adam, clip_grad_norm, clip_grad_value
from rnnkit.scratch.recurrent_layers import GRU, LSTM, RNN
from rnnkit.scratch.rnn_cell import rnn_step, rnn_step_backward
from rnnkit.scratch.truncated_bptt import TBPTTStep, bptt_chunks, tbptt

__all__ = [
    "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Elman", "NumpyCharLM", "charlm", "fast",
    "Module", "rnn_step", "rnn_step_backward", "lstm_step", "lstm_step_backward", "gru_step",
    "gru_step_backward", "bptt_chunks", "tbptt", "TBPTTStep", "cross_entropy",
    "cross_entropy_forward", "cross_entropy_backward", "mse", "mse_forward", "mse_backward",
    "log_softmax", "softmax", "SGD", "Adagrad", "Adam", "clip_grad_norm", "clip_grad_value",
    "gradcheck",
]

# Names from before the textbook/tuned split; CharLM was the tuned model (fast layers, fused head)
__getattr__ = renamed(__name__, {
    "CharLM": "rnnkit.scratch.fast:FastNumpyCharLM",
    "BatchSplit": "rnnkit.scratch.fast:BatchSplit",
})
