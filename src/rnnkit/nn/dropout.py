"""Recurrent dropout: the masks, drawn once per call, that the ``Fused*`` and layer-norm layers apply.

Three ways to regularise a recurrent layer without breaking its memory (plain dropout on the state
at every step wipes it out):

* **Variational dropout** (Gal & Ghahramani 2016): ONE Bernoulli mask per sequence, the same at
  every time step, on the input of the recurrent product: ``a_t = W_hh (h_{t-1} ⊙ m)`` with
  ``m ~ Bernoulli(1-p) / (1-p)``, shape (B, H). `LockedDropout` does the same to a whole
  sequence between layers (one mask over time, as in AWD-LSTM).
* **Zoneout** (Krueger et al. 2017): each unit keeps its previous value with probability ``p``
  instead of being updated: ``s_t = s_{t-1} + k_t ⊙ (s'_t - s_{t-1})``, ``k_t ~ Bernoulli(1-p)``,
  shape (T, B, H), drawn for every step. In eval mode the update uses the expectation ``k = 1 - p``
  (as the paper does), so eval is deterministic and equals the training mean of one step.
* **DropConnect on the recurrent weights** (Wan et al. 2013, as used by Merity et al. 2018,
  "weight-dropped LSTM"): ``W_hh ⊙ M / (1-p)`` with one mask M per forward call, shared by all
  time steps and all sequences of the batch.

Variational dropout and DropConnect are identity in eval mode; all three keep the expectation of
what they drop (``E[m] = 1``, ``E[W_hh ⊙ M / (1-p)] = W_hh``, ``E[s_t] = s_{t-1} + (1-p)(s'_t -
s_{t-1})``).

The layers of ``rnnkit.nn.fused`` and ``rnnkit.nn.layernorm`` take them as keyword-only arguments
``recurrent_dropout=``, ``zoneout=`` and ``weight_dropout=``, and apply them on the fast path
(``rnnkit.nn.fast``) and in the readable loop (``rnnkit.nn.loop.scan``) alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn._checks import check_probability


def bernoulli_mask(shape, p: float, like: Tensor, scale: bool) -> Tensor:
    """Mask of ones kept with probability 1-p (scaled by 1/(1-p) when ``scale``), like's dtype.

    Drawn as ``U < 1-p`` with U uniform in float32 (P = 1-p to 2^-24, whatever like's dtype):
    on CPU that is cheaper than ``Tensor.bernoulli_`` for a (T, B, H) zoneout mask.
    """
    keep = torch.rand(shape, dtype=torch.float32, device=like.device).lt_(1 - p).to(like.dtype)
    return keep.div_(1 - p) if scale else keep


def variational_mask(batch: int, size: int, p: float, like: Tensor) -> Tensor:
    """One dropout mask per sequence, (B, size), scaled by 1/(1-p) so that E[mask] = 1."""
    return bernoulli_mask((batch, size), p, like, scale=True)


def zoneout_keep(steps: int, batch: int, size: int, p: float, training: bool, like: Tensor) -> Tensor:
    """Update fractions ``k_t`` for zoneout: Bernoulli(1-p) (T, B, size) in training, else 1-p.

    In eval mode the result is (T, 1, 1), which broadcasts over the batch and the units.
    """
    if training:
        return bernoulli_mask((steps, batch, size), p, like, scale=False)
    return torch.full((steps, 1, 1), 1 - p, dtype=like.dtype, device=like.device)


def drop_connect(weight: Tensor, p: float, training: bool) -> Tensor:
    """DropConnect: ``weight ⊙ M / (1-p)``, one mask per call; the weight itself in eval mode."""
    return F.dropout(weight, p, training=training) if p and training else weight


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence, the same at every time step (variational dropout).

    x (T, B, F), or (B, T, F) with ``batch_first=True`` -> the same shape. Identity in eval mode.
    """

    def __init__(self, p: float = 0.5, batch_first: bool = False) -> None:
        super().__init__()
        self.p = check_probability("p", p)
        self.batch_first = batch_first

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3:
            raise ValueError(
                f"LockedDropout: expected a 3-D sequence tensor "
                f"({'B, T' if self.batch_first else 'T, B'}, F), got {x.dim()}-D"
            )
        if not self.training or self.p == 0:
            return x
        t_dim = 1 if self.batch_first else 0
        shape = list(x.shape)
        shape[t_dim] = 1  # one mask, broadcast over time
        return x * bernoulli_mask(shape, self.p, x, scale=True)

    def extra_repr(self) -> str:
        return f"p={self.p}" + (", batch_first=True" if self.batch_first else "")
