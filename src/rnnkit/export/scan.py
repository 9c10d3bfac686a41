"""The traceable time loop: torch's ``scan`` higher-order op, which keeps the time axis symbolic.

``rnnkit.nn.loop.scan`` is a Python ``for`` over T: eager runs it fine, but ``torch.export`` (and
``torch.compile``) unroll it, so the exported program holds exactly T steps and fails at any other
length (pytorch#115092, #126339). ``torch._higher_order_ops.scan`` is one graph node whose body is
traced once: ``torch.export`` keeps T symbolic and ``torch.onnx.export`` writes it as an ONNX
``Scan``. It is a prototype in torch 2.13 (importable from ``torch._higher_order_ops``, not yet
``torch.scan``), so this is the one place that imports it.

Semantics are those of ``rnnkit.nn.loop.scan`` and of the fused recurrence's masks:

* ``valid`` (T, B, 1) bool: at steps past a sequence's length its state is held and its output is
  zero; in the reverse direction each sequence therefore starts at its own last valid step, which
  is what ``pack_padded_sequence`` gives.
* ``keep``: zoneout in eval mode (Krueger et al. 2017), ``s_t = s_{t-1} + k (s'_t - s_{t-1})``
  with the constant ``k = 1 - p`` per state tensor.

Shapes: T time, B batch, G the step input's features (gates * H), H state features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch._higher_order_ops import scan as _scan

from rnnkit.nn.loop import length_mask

State = tuple[Tensor, ...]
#: step(x_t, state) -> new state; x_t is a tuple of per-step slices, state[0] is the output
Step = Callable[[tuple[Tensor, ...], State], State]


@dataclass
class Lane:
    """One recurrence inside a scan: its step, per-step inputs xs (T, B, ·), initial state,
    mask ``valid`` (T, B, 1) bool or None, and zoneout's update fraction per state (or None)."""

    step: Step
    xs: tuple[Tensor, ...]
    state: State
    valid: Tensor | None = None
    keep: tuple[float, ...] | None = None


def scan_lanes(lanes: Sequence[Lane], reverse: bool = False) -> list[tuple[Tensor, State]]:
    """Run several recurrences over the same time axis in ONE scan (both directions of a
    bidirectional layer: the reverse one gets its inputs flipped). Returns (out, final) per lane:
    out (T, B, H) is state[0] after each step, zero past each length."""
    xs, init, shape = [], [], []
    for lane in lanes:
        keep = lane.keep if lane.keep is not None and any(k != 1.0 for k in lane.keep) else None
        # the body sees a mask only as a scanned input, never as a closure
        shape.append((len(lane.xs), lane.valid is not None, len(lane.state), keep))
        xs += [*lane.xs, *([lane.valid] if lane.valid is not None else [])]
        init += _fresh(lane.state)

    def combine(carry: State, x_t: tuple[Tensor, ...]):
        new_carry, outs, i, c = [], [], 0, 0
        for lane, (n_x, masked, n_s, keep) in zip(lanes, shape):
            inputs, i = x_t[i:i + n_x], i + n_x
            m, i = (x_t[i], i + 1) if masked else (None, i)  # m (B, 1)
            old, c = carry[c:c + n_s], c + n_s
            new = lane.step(tuple(inputs), old)
            if keep is not None:  # zoneout in eval mode
                new = tuple(torch.lerp(s, n, k) for n, s, k in zip(new, old, keep))
            if m is None:
                # scan forbids an output that aliases the carry: the per-step output is a copy
                outs.append(new[0].clone())
            else:
                new = tuple(torch.where(m, n, s) for n, s in zip(new, old))
                outs.append(torch.where(m, new[0], torch.zeros_like(new[0])))
            new_carry += new
        return tuple(new_carry), tuple(outs)

    final, outs = _scan(combine, tuple(init), tuple(xs), reverse=reverse)
    result, c = [], 0
    for out, (_, _, n_s, _) in zip(outs, shape):
        result.append((out, tuple(final[c:c + n_s])))
        c += n_s
    return result


def time_loop(
    step: Step,
    xs: Sequence[Tensor],
    state: State,
    valid: Tensor | None = None,
    reverse: bool = False,
    keep: Sequence[float] | None = None,
) -> tuple[Tensor, State]:
    """Run ``step`` over axis 0 of every tensor in ``xs``, carrying ``state`` (one lane).

    xs: tensors (T, B, ·); state: tuple of (B, ·); valid (T, B, 1) bool or None; keep: zoneout's
    update fraction per state tensor (1.0: the plain update) or None.
    Returns (out (T, B, H) = state[0] after each step, zero past each length; final state).
    """
    lane = Lane(step, tuple(xs), tuple(state), valid, None if keep is None else tuple(keep))
    return scan_lanes([lane], reverse)[0]


def loop_scan(
    step,
    gi: Tensor,
    state: State,
    lengths: Tensor | None = None,
    reverse: bool = False,
    *,
    keep: tuple[Tensor | None, ...] | None = None,
) -> tuple[Tensor, State]:
    """`rnnkit.nn.loop.scan` on torch's scan op: the same contract, the same arithmetic.

    ``step(gi_t, state) -> state``; gi (T, B, G); state tuple of (B, ·); lengths (B,) hold each
    sequence's state past its end, where the output is zero; keep: per state tensor None or the
    zoneout update fractions (T, B, 1 or H). Returns (out (T, B, H_out), final state). The layers
    run it under ``torch.compile`` and ``torch.export`` (`rnnkit.nn.paths.time_loop`).
    """
    valid = length_mask(lengths, gi.shape[0])  # (T, B, 1) or None: scanned, never closed over
    zoned = [k for k, z in enumerate(keep or ()) if z is not None]
    xs = (gi, *(() if valid is None else (valid,)), *(keep[k] for k in zoned))
    copy_carry = torch.is_grad_enabled()

    def combine(carry: State, x_t: tuple[Tensor, ...]):
        new = step(x_t[0], carry)
        rest = x_t[1:] if valid is None else x_t[2:]
        if zoned:  # s_t = s_{t-1} + k_t (s'_t - s_{t-1})
            k_t = dict(zip(zoned, rest))
            new = tuple(n if i not in k_t else s + k_t[i] * (n - s)
                        for i, (n, s) in enumerate(zip(new, carry)))
        if valid is None:
            out = new[0].clone()  # scan forbids an output that aliases the carry
        else:
            m = x_t[1]  # (B, 1)
            new = tuple(torch.where(m, n, s) for n, s in zip(new, carry))
            out = new[0].masked_fill(~m, 0.0)
        if copy_carry:
            # under autograd inductor refuses a carry that an op saved for its backward (tanh,
            # sigmoid save their outputs): "scan might be aliasing the input or the output!"
            # (pytorch#195977); a copy is what it saves instead
            new = tuple(n.clone() for n in new)
        return new, out

    final, out = _scan(combine, _fresh(state), xs, reverse=reverse)
    return out, tuple(final)


def _fresh(state: State) -> State:
    """Copies of the initial states: a state that is a view into a larger tensor (layer k of
    h0) has a storage offset of k*B*H, and tracing the scan would fix B from it."""
    return tuple(s.clone() for s in state)


def linear_scan(a: Tensor, b: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
    """``h_t = a_t ⊙ h_{t-1} + b_t`` over axis 0 (minGRU, minLSTM). a, b (T, B, H), h0 (B, H).

    Returns (h (T, B, H), h_T (B, H)). Sequential, unlike rnnkit.nn.mingru's parallel scans: in
    an exported graph the loop body is one fused multiply-add, and a step costs the same either way.
    """

    copy_carry = torch.is_grad_enabled()

    def combine(h: Tensor, ab: tuple[Tensor, Tensor]):
        new = torch.addcmul(ab[1], ab[0], h)
        return (new.clone() if copy_carry else new), new.clone()  # see loop_scan for the copy

    final, out = _scan(combine, _fresh((h0,))[0], (a, b))
    return out, final
