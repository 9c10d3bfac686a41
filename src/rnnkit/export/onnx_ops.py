"""ONNX's own RNN / LSTM / GRU operators, and the optional graph inputs, emitted during export.

``torch.onnx.ops.symbolic_multi_out`` puts one ONNX operator into the exported program (eager calls
return placeholders, so these functions run only under ``torch.onnx.export``). Three conversions
make the operator compute what torch.nn computes:

* gate order: torch LSTM (i, f, g, o) -> ONNX (i, o, f, c); torch GRU (r, z, n) -> ONNX (z, r, h);
* biases: ONNX ``B`` is ``[Wb ; Rb]`` per direction, torch's ``b_ih`` then ``b_hh`` reordered alike;
* GRU's reset gate: torch applies it after the recurrent product, ``r ⊙ (W_hn h + b_hn)``, which is
  ONNX's ``linear_before_reset=1`` (the default 0 is a different equation: pytorch#189225,
  onnxscript#2852).

``sequence_lens`` has the meaning of rnnkit's ``lengths``: outputs past a length are zero, ``Y_h``
is each sequence's last valid state, and the reverse direction starts at each last valid step.

Optional inputs: a graph input whose name is also an initializer is optional in ONNX (IR >= 4),
the initializer being its default. States default to the layer's initial state with a batch of 1,
broadcast to the batch (``Expand``); lengths default to one huge value clipped to T (``Min``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.onnx.ops import symbolic, symbolic_multi_out

from rnnkit.export.recurrence import Params, Stack

#: torch's gate blocks in ONNX's order
ONNX_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn_tanh": (0,), "rnn_relu": (0,)}
OPS = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}
#: the default of an omitted ``lengths`` input: clipped to T by the graph
FULL_LENGTH = 2**62


def uses_native_op(stack: Stack) -> bool:
    """True when ONNX has an operator for this stack: plain cells, no projection, no zoneout."""
    return stack.kind in OPS and not stack.proj_size and all(k == 1.0 for k in stack.keep)


def _reorder(kind: str, w: Tensor) -> Tensor:
    blocks = w.chunk(len(ONNX_ORDER[kind]), dim=0)
    return torch.cat([blocks[i] for i in ONNX_ORDER[kind]], dim=0)


def onnx_weights(stack: Stack, p: Params, layer: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """W (D, G*H, I), R (D, G*H, H), B (D, 2*G*H) or None, in ONNX's gate order (copies)."""
    W, R, B = [], [], []
    for d in range(stack.directions):
        sfx = stack.suffix(layer, d)
        W.append(_reorder(stack.kind, p[f"weight_ih{sfx}"]))
        R.append(_reorder(stack.kind, p[f"weight_hh{sfx}"]))
        if f"bias_ih{sfx}" in p:
            B.append(torch.cat([_reorder(stack.kind, p[f"bias_ih{sfx}"]),
                                _reorder(stack.kind, p[f"bias_hh{sfx}"])]))
    stacked = [torch.stack(t).detach().clone() if t else None for t in (W, R, B)]
    return stacked[0], stacked[1], stacked[2]


def native_layer(
    stack: Stack,
    x: Tensor,
    weights: tuple[Tensor, Tensor, Tensor | None],
    seq_lens: Tensor | None,
    state: tuple[Tensor, ...],
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer (both directions) as one ONNX operator.

    x (T, B, I); state tuple of (D, B, H); seq_lens (B,) or None -> (out (T, B, D*H), finals).
    """
    T, Bn, H, D = x.shape[0], x.shape[1], stack.hidden_size, stack.directions
    attrs = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
    if stack.kind == "gru":
        attrs["linear_before_reset"] = 1
    elif stack.kind != "lstm":
        attrs["activations"] = ["Tanh" if stack.kind == "rnn_tanh" else "Relu"] * D
    lens = None if seq_lens is None else seq_lens.to(torch.int32)  # ONNX wants int32 here
    W, R, B = weights
    inputs = [x, W, R, B, lens, *state]
    n_out = 1 + len(state)
    outs = symbolic_multi_out(
        f"{OPS[stack.kind]}", inputs, attrs, dtypes=[x.dtype] * n_out,
        shapes=[[T, D, Bn, H]] + [[D, Bn, H]] * len(state),
    )
    y = outs[0].permute(0, 2, 1, 3).reshape(T, Bn, D * H)  # (T, D, B, H) -> (T, B, D*H)
    return y, tuple(outs[1:])


def _shape(t: Tensor, start: int, end: int) -> Tensor:
    return symbolic("Shape", [t], {"start": start, "end": end}, dtype=torch.int64,
                    shape=[end - start])


def broadcast_batch(state: Tensor, x: Tensor, batch_dim: int, state_batch_dim: int = 1) -> Tensor:
    """``state`` with its batch axis expanded to x's batch size (a batch of 1 broadcasts)."""
    rank = state.dim()
    parts = [_shape(state, 0, state_batch_dim), _shape(x, batch_dim, batch_dim + 1),
             _shape(state, state_batch_dim + 1, rank)]
    parts = [p for p, n in zip(parts, (state_batch_dim, 1, rank - state_batch_dim - 1)) if n]
    size = symbolic("Concat", parts, {"axis": 0}, dtype=torch.int64, shape=[rank])
    shape = list(state.shape)
    shape[state_batch_dim] = x.shape[batch_dim]
    return symbolic("Expand", [state, size], dtype=state.dtype, shape=shape)


def clip_lengths(lengths: Tensor, x: Tensor, time_dim: int, batch_dim: int) -> Tensor:
    """``min(lengths, T)`` broadcast to (B,): the omitted input's default becomes T for all."""
    full = symbolic("Expand", [lengths, _shape(x, batch_dim, batch_dim + 1)], dtype=lengths.dtype,
                    shape=[x.shape[batch_dim]])
    return symbolic("Min", [full, _shape(x, time_dim, time_dim + 1)], dtype=lengths.dtype,
                    shape=[x.shape[batch_dim]])
