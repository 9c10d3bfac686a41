"""rnnkit.scratch.fast: the speed-tuned NumPy engine, the same numbers as the textbook rnnkit.scratch.

The textbook layers call one cell step per time step; these compute the same outputs, states and
gradients (up to float rounding: tests/scratch/fast/test_scratch_fast_equivalence.py, float64 to
1e-10) with the tricks that make NumPy fast, each in its own file:

    rnn_loop.py, lstm_loop.py, gru_loop.py   the recurrence alone, into preallocated arrays with
                                             in-place ufuncs; LSTM's four gates as one scaled tanh
    loop_layers.py                           RNN, LSTM, GRU: input projection and dW_ih as one
                                             matmul over all T*B rows, around those loops
    softmax_ce.py, reductions.py             softmax cross-entropy with fast short-row reductions
    fused_charlm.py                          FastNumpyCharLM: output layer and loss fused, (V, N)
    batch_split.py                           BatchSplit: one step's batch split over threads

    from rnnkit.scratch import fast
    lstm = fast.LSTM(input_size, hidden_size, num_layers=2, seed=0)     # as scratch.LSTM
    model = fast.FastNumpyCharLM(chars, 100, cell="lstm")                 # as scratch.NumpyCharLM

``rnnkit.scratch.charlm.fit`` and ``rnnkit train --engine numpy`` train this engine.
"""

from rnnkit.scratch.fast.batch_split import MIN_SLICE, BatchSplit
from rnnkit.scratch.fast.fused_charlm import FastNumpyCharLM, fused_head
from rnnkit.scratch.fast.gru_loop import gru_recur, gru_recur_backward
from rnnkit.scratch.fast.loop_layers import GRU, LSTM, RNN
from rnnkit.scratch.fast.lstm_loop import lstm_recur, lstm_recur_backward
from rnnkit.scratch.fast.rnn_loop import rnn_recur, rnn_recur_backward
from rnnkit.scratch.fast.softmax_ce import (
    cross_entropy,
    cross_entropy_backward,
    cross_entropy_forward,
)

__all__ = [
    "RNN", "LSTM", "GRU", "FastNumpyCharLM", "fused_head", "cross_entropy", "cross_entropy_forward",
    "cross_entropy_backward", "BatchSplit", "MIN_SLICE", "rnn_recur", "rnn_recur_backward",
    "lstm_recur", "lstm_recur_backward", "gru_recur", "gru_recur_backward",
]
