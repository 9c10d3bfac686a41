"""The fast path: hand stock configurations to PyTorch's fused kernels, the ones ``torch.nn`` calls.

``torch._VF.{lstm, gru, rnn_tanh, rnn_relu}`` take the flat weight list in torch.nn's order and run
every layer and direction (cuDNN on NVIDIA GPUs, ATen's C++ loop on CPU), so calling them with the
same arguments gives ``torch.nn``'s numbers and speed.
"""

from __future__ import annotations

from torch import _VF, Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

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


def run_native_any(
    mode: str,
    input: Tensor | PackedSequence,
    hx: tuple[Tensor, ...],
    weights: list[Tensor],
    lengths: Tensor | None,
    *,
    batch_first: bool,
    **kw,
) -> tuple[Tensor | PackedSequence, tuple[Tensor, ...]]:
    """`run_native` for a padded tensor, a tensor with lengths, or a PackedSequence.

    hx is in the caller's batch order. With lengths the input is packed, run and padded back, so
    outputs past each length are zero and the final states are those at each last valid step.
    """
    if isinstance(input, PackedSequence):
        order, restore = input.sorted_indices, input.unsorted_indices
        if order is not None:  # the kernel wants the state in sorted batch order
            hx = tuple(h.index_select(1, order) for h in hx)
        out, h_n = run_native(
            mode, input.data, input.batch_sizes, hx, weights, batch_first=False, **kw
        )
        if restore is not None:
            h_n = tuple(h.index_select(1, restore) for h in h_n)
        return PackedSequence(out, input.batch_sizes, order, restore), h_n
    if lengths is not None:
        seq_len = input.size(1 if batch_first else 0)
        packed = pack_padded_sequence(
            input, lengths.cpu(), batch_first=batch_first, enforce_sorted=False
        )
        out, h_n = run_native_any(mode, packed, hx, weights, None, batch_first=batch_first, **kw)
        out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=seq_len)
        return out, h_n
    return run_native(mode, input, None, hx, weights, batch_first=batch_first, **kw)
