"""The readable time loop: one direction of one layer, with optional lengths and zoneout.

``scan(step, gi, state)`` is the one loop every readable path runs (the layers' ``backend="loop"``,
the general recurrence, the Elman network, minGRU's reference) and the oracle the fast path is
tested against. A step is one function ``step(gi_t, state) -> new state``: ``gi_t`` the input
projection of step t, ``state`` a tuple of (B, ·) tensors whose first element is the output h_t.
Whatever else a step needs (weights, a dropout mask on the h entering ``W_hh``) it closes over.

Two traps this loop avoids on purpose:

* the input projection ``W_ih x_t + b`` is computed for all T steps in one matrix product and the
  result is split with ``unbind`` (indexing a ``(T, B, G)`` tensor once per step would make every
  step's backward write a full-size gradient, so the backward pass would cost O(T^2));
* per-step Python work is only the state update itself.

Lengths: at steps ``t >= length[b]`` sequence ``b`` keeps its state and emits zeros. In the reverse
direction the loop runs from ``T-1`` down to 0, so each sequence starts from its initial state at its
own last valid step -- the same numbers ``pack_padded_sequence`` gives.

Zoneout (Krueger et al. 2017): ``keep`` gives per state tensor the update fractions ``k_t``
(T, B, 1 or H): ``s_t = s_{t-1} + k_t ⊙ (s'_t - s_{t-1})``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

State = tuple[Tensor, ...]
#: step(gi_t, state) -> new state; the first element of the state is the output h_t
Step = Callable[[Tensor, State], State]


def column_major(w: Tensor) -> Tensor:
    """``w`` with the same values stored transposed, so that ``w.t()`` is contiguous.

    Each step multiplies the state by ``W_hh^T``; on CPU that product runs several times faster on
    a contiguous matrix than on a transposed view (benchmarks/layers.py's "rnnkit loop" column
    shows the readable path with it), so the loop pays for one copy per sequence instead (autograd
    sends the gradient back through the copy).
    """
    return w.t().contiguous().t()


def length_mask(lengths: Tensor | None, steps: int, device=None) -> Tensor | None:
    """(T, B, 1), True where step t lies inside sequence b (``t < lengths[b]``); None for None."""
    if lengths is None:
        return None
    t = torch.arange(steps, device=device if device is not None else lengths.device)
    return (t[:, None] < lengths.to(t.device)[None, :]).unsqueeze(-1)


def scan(
    step: Step,
    gi: Tensor,
    state: State,
    lengths: Tensor | None = None,
    reverse: bool = False,
    *,
    keep: tuple[Tensor | None, ...] | None = None,
) -> tuple[Tensor, State]:
    """Run ``step`` over time. gi (T, B, G), state tuple of (B, ·) -> (out (T, B, H_out), state).

    lengths (B,): hold each sequence's state past its end, where the output is zero. keep: one
    (T, B, 1 or H) tensor or None per state tensor, the zoneout update fractions.
    """
    inputs = gi.unbind(0)  # T x (B, G)
    mask = length_mask(lengths, len(inputs), gi.device)
    masks = None if mask is None else mask.unbind(0)  # T x (B, 1)
    keeps = [None if k is None else k.unbind(0) for k in keep] if keep is not None else None
    order = range(len(inputs) - 1, -1, -1) if reverse else range(len(inputs))
    outs: list[Tensor] = [None] * len(inputs)  # type: ignore[list-item]
    for t in order:
        new = step(inputs[t], state)
        if keeps is not None:  # s_t = s_{t-1} + k_t (s'_t - s_{t-1})
            new = tuple(n if k is None else s + k[t] * (n - s)
                        for n, s, k in zip(new, state, keeps))
        if masks is not None:
            m = masks[t]
            new = tuple(torch.where(m, n, s) for n, s in zip(new, state))
            outs[t] = new[0].masked_fill(~m, 0.0)
        else:
            outs[t] = new[0]
        state = new
    return torch.stack(outs), state


def run_layers(
    run_direction: Callable[..., tuple[Tensor, State]],
    x: Tensor,
    hx: State,
    num_layers: int,
    num_directions: int = 1,
    dropout: float = 0.0,
) -> tuple[Tensor, State]:
    """Stacked layers, each in one or two directions: the outputs of layer k (concatenated over
    directions) are the input of layer k+1, with dropout between layers as torch.nn does.

    ``run_direction(x, state, layer, reverse) -> (out, state)`` runs one direction of one layer.
    x (T, B, I), hx tuple of (L*D, B, ·) -> (out (T, B, D*H_out), h_n tuple of (L*D, B, ·)).
    """
    D = num_directions
    finals: list[list[Tensor]] = [[] for _ in hx]
    for layer in range(num_layers):
        outs = []
        for direction in range(D):
            state = tuple(h[layer * D + direction] for h in hx)
            out, state = run_direction(x, state, layer, direction == 1)
            outs.append(out)
            for k, s in enumerate(state):
                finals[k].append(s)
        x = outs[0] if D == 1 else torch.cat(outs, dim=2)  # (T, B, D*H_out)
        if dropout and layer < num_layers - 1:
            x = F.dropout(x, dropout, training=True)
    return x, tuple(torch.stack(f) for f in finals)


def packed_to_padded(packed: PackedSequence) -> tuple[Tensor, Tensor]:
    """(T, B, F) in the caller's batch order and the lengths (int64, CPU)."""
    padded, lengths = pad_packed_sequence(packed)
    return padded, lengths


def padded_to_packed(padded: Tensor, like: PackedSequence) -> PackedSequence:
    """Inverse of `packed_to_padded` with ``like``'s exact layout (batch sizes, sort order)."""
    if like.sorted_indices is not None:
        padded = padded.index_select(1, like.sorted_indices)
    T, B = padded.shape[:2]
    # one gather (not one slice per step, whose backward would be O(T^2)): row t*B + j of the
    # flattened (T*B, F) tensor for every j < batch_sizes[t]
    sizes = like.batch_sizes.to(padded.device)
    steps = torch.arange(T, device=padded.device)
    cols = torch.arange(B, device=padded.device)
    rows = (steps[:, None] * B + cols[None, :])[cols[None, :] < sizes[:T, None]]
    data = padded.reshape(T * B, *padded.shape[2:]).index_select(0, rows)
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)
