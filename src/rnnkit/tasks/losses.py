"""Losses over padded batches: a per-step cross-entropy that ignores padding.

A batch of sequences of different lengths is padded to ``(B, T)``; the loss must be the one computed on
the real steps only. Flattening batch and time into one axis turns per-step classification into plain
classification over ``N = B*T`` rows, and ``ignore_index`` drops the padded rows from both the sum and
the count, so

    loss = sum_{b, t < len_b} -log softmax(logits[b, t])[y[b, t]]  /  sum_b len_b

which is the mean over every real step of the batch (not the mean of per-sequence means).
"""

from __future__ import annotations

# ruff: noqa: F722 (jaxtyping shape strings such as "B T H" are not Python expressions)
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

IGNORE_INDEX = -100  # the default of torch.nn.functional.cross_entropy


def lengths_to_mask(lengths: Int[Tensor, " B"] | list[int], max_len: int | None = None) -> Bool[Tensor, "B T"]:
    """``mask[b, t] = t < lengths[b]``: True on real steps, False on padding."""
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (one length per sequence), got shape {tuple(lengths.shape)}")
    if lengths.numel() and int(lengths.min()) < 0:
        raise ValueError(f"lengths must be >= 0, got {lengths.tolist()}")
    T = int(lengths.max()) if max_len is None and lengths.numel() else (max_len or 0)
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)


def pad_targets(
    targets: Int[Tensor, "B T"],
    lengths: Int[Tensor, " B"] | list[int] | None = None,
    mask: Bool[Tensor, "B T"] | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> Int[Tensor, "B T"]:
    """A copy of ``targets`` with every padded step set to ``ignore_index`` (lengths or mask decide)."""
    if lengths is not None and mask is not None:
        raise ValueError("give lengths or mask, not both")
    if lengths is not None:
        mask = lengths_to_mask(torch.as_tensor(lengths, device=targets.device), targets.size(1))
    if mask is None:
        return targets
    if mask.shape != targets.shape:
        raise ValueError(
            f"mask must have the shape of targets (B, T). Expected {tuple(targets.shape)}, got {tuple(mask.shape)}"
        )
    return targets.masked_fill(~mask, ignore_index)


def masked_cross_entropy(
    logits: Float[Tensor, "B T C"],
    targets: Int[Tensor, "B T"],
    lengths: Int[Tensor, " B"] | list[int] | None = None,
    mask: Bool[Tensor, "B T"] | None = None,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy over every real step of a padded batch.

    logits (B, T, C) -> (B*T, C), targets (B, T) -> (B*T,), padded steps (from ``lengths`` or
    ``mask``, or already equal to ``ignore_index``) contribute nothing. ``reduction="mean"`` divides
    by the number of real steps; ``"sum"`` returns the total.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, C), got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape[:2]:
        raise ValueError(
            f"targets must be (B, T) matching logits. Expected {tuple(logits.shape[:2])}, got {tuple(targets.shape)}"
        )
    targets = pad_targets(targets, lengths=lengths, mask=mask, ignore_index=ignore_index)
    B, T, C = logits.shape
    return F.cross_entropy(
        logits.reshape(B * T, C),  # (B*T, C)
        targets.reshape(B * T),  # (B*T,)
        ignore_index=ignore_index,
        reduction=reduction,
    )
