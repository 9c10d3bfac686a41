"""``choose_path``: which implementation each layer runs, from its backend, the scope and the input.
(Each path's numbers are tested against its reference elsewhere; this is the choice itself.)"""

from __future__ import annotations

import torch

import rnnkit
from rnnkit.nn.paths import COMPILED, FAST, LOOP, NATIVE, choose_path

X = torch.zeros(3, 2, 4)


def test_backend_loop_always_wins():
    with rnnkit.options(compiled=True):
        assert choose_path("loop", X, native=True, fast_cell="lstm") == LOOP


def test_native_where_the_layer_has_it():
    assert choose_path("auto", X, native=True) == NATIVE
    assert choose_path("native", X, native=True) == NATIVE
    with rnnkit.options(compiled=True):  # the compiled kernels do not replace torch's own
        assert choose_path("auto", X, native=True, fast_cell="lstm") == NATIVE


def test_fast_and_compiled():
    assert choose_path("auto", X, fast_cell="lstm") == FAST  # today's default: eager kernels
    with rnnkit.options(compiled=True):
        assert choose_path("auto", X, fast_cell="lstm") == COMPILED
        assert choose_path("auto", X.double(), fast_cell="ln_lstm") == COMPILED
        assert choose_path("auto", X, fast_cell="lstm", compiled=False) == FAST  # layer wins
        assert choose_path("auto", X.bfloat16(), fast_cell="lstm") == FAST  # not built for bf16
        assert choose_path("auto", X, fast_cell="gru") == COMPILED
        assert choose_path("auto", X, fast_cell="rnn_relu") == COMPILED
        with torch.autocast("cpu", dtype=torch.bfloat16):  # the kernels would see bf16
            assert choose_path("auto", X, fast_cell="lstm") == FAST
    assert choose_path("auto", X, fast_cell="lstm", compiled=True) == COMPILED


def test_no_kernel_for_the_configuration_runs_the_loop():
    assert choose_path("auto", X, fast_cell=None) == LOOP


def test_each_layer_asks_the_same_function():
    x = torch.randn(3, 2, 4)
    assert rnnkit.LSTM(4, 5)._path(x) == NATIVE
    assert rnnkit.LSTM(4, 5, backend="loop")._path(x) == LOOP
    assert rnnkit.FusedGRU(4, 5)._path(x) == FAST
    assert rnnkit.FusedLSTM(4, 5, proj_size=2)._path(x) == LOOP  # no fast kernel projects
    assert rnnkit.LayerNormLSTM(4, 5, compiled=True)._path(x) == COMPILED
    with rnnkit.options(compiled=True):
        assert rnnkit.LayerNormGRU(4, 5)._path(x) == COMPILED
        assert rnnkit.FusedRNN(4, 5)._path(x) == COMPILED
        assert rnnkit.FusedLSTM(4, 5)._path(x) == COMPILED
