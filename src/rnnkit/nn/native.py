"""The fast path: hand stock configurations to PyTorch's fused kernels, the ones ``torch.nn`` calls.

``torch._VF.{lstm, gru, rnn_tanh, rnn_relu}`` take the flat weight list in torch.nn's order and run
every layer and direction (cuDNN on NVIDIA GPUs, ATen's C++ loop on CPU), so calling them with the
same arguments gives ``torch.nn``'s numbers and speed.
"""

from __future__ import annotations

from torch import _VF, Tensor

_KERNELS = {"LSTM": _VF.lstm, "GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu}


def run_native(
    mode: str,
    input: Tensor,
    batch_sizes: Tensor | None,
    hx: tuple[Tensor, ...],
    weights: list[Tensor],
    *,
    bias: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
    batch_first: bool,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run all layers and directions. Returns (output, final states as a tuple)."""
    kernel = _KERNELS[mode]
    h = hx if mode == "LSTM" else hx[0]
    if batch_sizes is None:
        result = kernel(
            input, h, weights, bias, num_layers, dropout, training, bidirectional, batch_first
        )
    else:
        result = kernel(
            input, batch_sizes, h, weights, bias, num_layers, dropout, training, bidirectional
        )
    return result[0], tuple(result[1:])
