"""The cells the fast path runs: for each, its kernels and the shapes of what it takes.

A kernel factory is called as ``factory(gi, params, save)`` (``save=False`` when no gradient is
wanted) and returns a kernel with the interface of `rnnkit.nn.fast.driver`. ``compiled`` is
the C++ kernel where one exists (`rnnkit.nn.fast.compiled`), else None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rnnkit.nn.fast import elman, gru, lstm
from rnnkit.nn.fast.compiled import elman as compiled_elman
from rnnkit.nn.fast.compiled import gru as compiled_gru
from rnnkit.nn.fast.compiled import lstm as compiled_lstm


@dataclass(frozen=True)
class CellKernels:
    eager: Callable
    compiled: Callable | None
    n_state: int  # state tensors: (h,) or (h, c)
    gates: int  # G = gates * H
    params: tuple[str, ...]  # the cell's tensors beyond W_hh, in this order


KERNELS: dict[str, CellKernels] = {
    "rnn_tanh": CellKernels(elman.tanh_kernel, compiled_elman.tanh_kernel, 1, 1, ()),
    "rnn_relu": CellKernels(elman.relu_kernel, compiled_elman.relu_kernel, 1, 1, ()),
    "lstm": CellKernels(lstm.LSTMKernel, compiled_lstm.lstm_kernel, 2, 4, ()),
    "gru": CellKernels(gru.GRUKernel, compiled_gru.gru_kernel, 1, 3, ("b_hh",)),
    "ln_lstm": CellKernels(lstm.LNLSTMKernel, compiled_lstm.ln_lstm_kernel, 2, 4,
                           ("gamma_hh", "gamma_c", "beta_c")),
    # the same with the input side's layer norm inside: gi is W_ih x, before γ_ih LN(·) + shift
    "ln_lstm_x": CellKernels(lstm.InputLNLSTMKernel, compiled_lstm.ln_lstm_x_kernel, 2, 4,
                             ("gamma_hh", "gamma_c", "beta_c", "gamma_ih", "shift")),
    "ln_gru": CellKernels(gru.LNGRUKernel, compiled_gru.ln_gru_kernel, 1, 3, ("gamma_hh", "b_hh")),
    # the same with the input side's layer norm inside: gi is W_ih x, before γ_ih LN(·) + shift
    "ln_gru_x": CellKernels(gru.InputLNGRUKernel, compiled_gru.ln_gru_x_kernel, 1, 3,
                            ("gamma_hh", "b_hh", "gamma_ih", "shift")),
}
