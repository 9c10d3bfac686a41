"""Bad input raises ValueError / RuntimeError / TypeError saying what was expected and what was got."""

from __future__ import annotations

import re

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit

I, H = 4, 5


def raises(exc, pattern, fn, *args, **kwargs):
    with pytest.raises(exc, match=pattern):
        fn(*args, **kwargs)


@pytest.mark.parametrize("cls", [rnnkit.RNN, rnnkit.LSTM, rnnkit.GRU])
@pytest.mark.parametrize("backend", ["native", "loop"])
def test_forward_errors(cls, backend):
    m = cls(I, H, num_layers=2, backend=backend)
    x = torch.randn(6, 3, I)
    raises(ValueError, "Expected input to be 2D or 3D, got 4D.*instead", m, torch.randn(1, 6, 3, I))
    raises(RuntimeError, re.escape("Expected 4, got 7"), m, torch.randn(6, 3, 7))
    raises(ValueError, "RNN input dtype \\(torch.float64\\) does not match weight dtype "
           "\\(torch.float32\\)", m, x.double())
    bad = torch.zeros(2, 4, H)  # batch 4, input batch 3
    if cls is rnnkit.LSTM:
        raises(RuntimeError, "tuple \\(h_0, c_0\\).*got a single Tensor", m, x, torch.zeros(2, 3, H))
        raises(RuntimeError, re.escape("Expected hidden[0] size (2, 3, 5), got [2, 4, 5] (h_0"),
               m, x, (bad, torch.zeros(2, 3, H)))
        raises(RuntimeError, re.escape("hx and cx should also be 3-D but got (2-D, 2-D)"), m, x,
               (torch.zeros(2, H),) * 2)
        raises(ValueError, "hx\\[1\\] \\(c_0\\) dtype", m, x,
               (torch.zeros(2, 3, H), torch.zeros(2, 3, H, dtype=torch.float64)))
    else:
        raises(RuntimeError, re.escape("Expected hidden size (2, 3, 5), got [2, 4, 5] (hx"), m, x,
               bad)
        raises(RuntimeError, "should also be 2-D but got 3-D", m, x[:, 0], torch.zeros(2, 1, H))
        raises(RuntimeError, "only LSTM takes a pair", m, x, (bad, bad))
        raises(ValueError, "hx dtype", m, x, torch.zeros(2, 3, H, dtype=torch.float64))
    # lengths
    raises(ValueError, "between 1 and the sequence length 6; got min 0", m, x, lengths=[6, 0, 2])
    raises(ValueError, "got min 1, max 7", m, x, lengths=[7, 1, 2])
    raises(ValueError, "one entry per sequence in the batch. Expected 3, got 2", m, x, lengths=[6, 2])
    raises(TypeError, "lengths must hold integers", m, x, lengths=torch.tensor([1.0, 2.0, 3.0]))
    packed = pack_padded_sequence(x, [6, 5, 2])
    raises(ValueError, "cannot be combined with a PackedSequence", m, packed, lengths=[6, 5, 2])
    raises(TypeError, "Tensor or PackedSequence, got list", m, [1, 2, 3])


def test_constructor_errors():
    raises(ValueError, "hidden_size must be greater than zero, got 0", rnnkit.LSTM, 3, 0)
    raises(ValueError, "input_size must be greater than zero, got -1", rnnkit.GRU, -1, 4)
    raises(ValueError, "num_layers must be greater than zero, got 0", rnnkit.RNN, 3, 4, 0)
    raises(TypeError, "hidden_size should be of type int, got: float", rnnkit.RNN, 3, 4.0)
    raises(ValueError, "proj_size argument is only supported for LSTM", rnnkit.GRU, 3, 4, proj_size=2)
    raises(ValueError, "proj_size argument is only supported for LSTM", rnnkit.RNN, 3, 4, proj_size=2)
    raises(ValueError, "proj_size has to be smaller than hidden_size; got proj_size=4, hidden_size=4",
           rnnkit.LSTM, 3, 4, proj_size=4)
    raises(ValueError, "proj_size should be a positive integer", rnnkit.LSTM, 3, 4, proj_size=-1)
    raises(ValueError, "dropout should be a number in range \\[0, 1\\]", rnnkit.LSTM, 3, 4, dropout=1.5)
    raises(ValueError, "Unknown nonlinearity 'sigmoid'", rnnkit.RNN, 3, 4, nonlinearity="sigmoid")
    raises(ValueError, "init_state must be one of zeros, random, learned; got 'ones'",
           rnnkit.LSTM, 3, 4, init_state="ones")
    raises(ValueError, "backend must be one of", rnnkit.LSTM, 3, 4, backend="cudnn")
    raises(ValueError, "output_size must be greater than zero", rnnkit.Elman, 3, 4, 0)
    raises(ValueError, "hidden_size must be zero or greater", rnnkit.LSTMCell, 3, -1)
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        rnnkit.LSTM(3, 4, dropout=0.5)


def test_cell_errors():
    cell = rnnkit.LSTMCell(I, H)
    raises(ValueError, re.escape("Expected input to be 1D or 2D, got 3D instead (1D: (I,), 2D: "
                                 "(B, I))"), cell, torch.randn(2, 3, I))
    raises(RuntimeError, "input has inconsistent input_size: got 3 expected 4", cell,
           torch.randn(2, 3))
    raises(TypeError, "tuple \\(h, c\\).*got a single Tensor", cell, torch.randn(2, I), torch.randn(2, H))
    raises(RuntimeError, re.escape("Input batch size 2 doesn't match hidden0 batch size 3"), cell,
           torch.randn(2, I), (torch.randn(3, H), torch.randn(3, H)))
    gru = rnnkit.GRUCell(I, H)
    raises(ValueError, "RNN input dtype \\(torch.float64\\)", gru,
           torch.randn(2, I, dtype=torch.float64))
    raises(ValueError, "Expected hx to be 1D like the input, got 2D", gru, torch.randn(I), torch.randn(1, H))


def test_step_and_module_errors():
    raises(ValueError, "bidirectional layer needs the whole sequence",
           rnnkit.GRU(I, H, bidirectional=True).step, torch.randn(2, I))
    net = rnnkit.Elman(I, H, 2)
    raises(RuntimeError, re.escape("Expected h0 size (3, 5), got [3, 4]"), net,
           torch.randn(6, 3, I), torch.zeros(3, 4))
    raises(RuntimeError, "Expected 4, got 2", net, torch.randn(6, 3, 2))
    rec = rnnkit.Recurrent(torch.nn.Linear(I, 3), torch.nn.Linear(H, H), hidden_size=H)
    raises(RuntimeError, re.escape("v(x) must have shape (T, B, hidden_size) = (6, 3, 5), got (6, 3, 3)"),
           rec, torch.randn(6, 3, I))
    raises(TypeError, "v must be a module or a callable, got int", rnnkit.Recurrent, 1, rec.q, hidden_size=H)
