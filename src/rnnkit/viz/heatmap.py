"""Hidden-state heat map: the activations h_t of one layer over one sequence.

Rows are hidden units (H), columns are time steps (T); the colour is the value of ``h[t, j]``, on a
diverging scale centred at 0 (tanh-bounded states lie in [-1, 1]). Units that switch at a marker and
then hold their value are the memory of the network, visible as horizontal bands.

A wide layer (a char LM's 384 units, say) drawn whole is a barcode nobody can read, so a picture
usually shows a few units: `most_varying_units` picks the ones whose value changes most over
the sequence (largest standard deviation over time), and each row is labelled with its unit index.
"""

from __future__ import annotations

# ruff: noqa: F722 (jaxtyping shape strings such as "B T H" are not Python expressions)
import textwrap
from collections.abc import Sequence

import numpy as np
import torch
from jaxtyping import Float
from matplotlib.figure import Figure
from torch import Tensor, nn

from rnnkit.checks import check_positive_int
from rnnkit.viz.gradflow import stepwise

INCH_PER_TITLE_CHAR = 0.09  # a 10-point title character (about 0.076 in), with room to spare
TITLE_CHARS = 120  # wrap title lines longer than this: they would not fit 14 inches


@torch.no_grad()
def hidden_states(
    model: nn.Module, run, attr: str = "rnn", layer: int = -1, direction: int = 0, cell_state: bool = False
) -> Float[Tensor, "B T H"]:
    """The states of ``model.<attr>`` (one layer and direction) while ``run(model)`` is evaluated.

    ``cell_state=True`` returns an LSTM's c_t instead of h_t.
    """
    with stepwise(model, attr) as unrolled:
        run(model)
    states = unrolled.cells if cell_state else unrolled.states
    if cell_state and unrolled.mode != "LSTM":
        raise ValueError(f"only an LSTM has a cell state; this layer is {unrolled.mode}")
    L, D = len(states), len(states[0])
    if not -L <= layer < L or not 0 <= direction < D:
        raise ValueError(f"layer must lie in [-{L}, {L}) and direction in [0, {D}), got {layer} and {direction}")
    return torch.stack(states[layer][direction], dim=1)  # (B, T, H)


def most_varying_units(states: Float[Tensor, "T H"] | np.ndarray, n: int) -> list[int]:
    """The indices of the ``n`` units whose state varies most over time (largest standard deviation
    over the T steps), most varying first; ties go to the lower index. All H units if n >= H."""
    s = np.asarray(torch.as_tensor(states).detach().cpu().double())
    if s.ndim != 2:
        raise ValueError(f"states must be (T, H), got shape {s.shape}")
    check_positive_int("n", n)
    spread = s.std(axis=0)  # (H,)
    order = sorted(range(s.shape[1]), key=lambda j: (-spread[j], j))
    return order[:n]


def plot_hidden_states(
    states: Float[Tensor, "T H"] | np.ndarray,
    title: str = "Hidden state h_t",
    tick_labels: Sequence[str] | None = None,
    marks: Sequence[int] = (),
    ax=None,
    units: Sequence[int] | None = None,
) -> Figure:
    """Heat map of one sequence's states (T, H): hidden unit on y, time step on x.

    ``units`` picks the units to show, one row each from the bottom up, labelled with the unit's
    index (default: all H, in order); ``tick_labels`` names each step (the characters of a text,
    say); ``marks`` draws a dashed line at the given steps (the adding problem's markers, say).
    """
    s = np.asarray(torch.as_tensor(states).detach().cpu().double())
    if s.ndim != 2:
        raise ValueError(f"states must be (T, H), got shape {s.shape}")
    T, H = s.shape
    units = list(range(H)) if units is None else [int(j) for j in units]
    bad = [j for j in units if not 0 <= j < H]
    if bad or not units:
        raise ValueError(f"units must be indices in [0, {H}), got {bad or 'none'}")
    s = s[:, units]  # (T, U)
    # wide enough for the title as well as the steps (a short text made a figure narrower than its
    # title, which was cut off); a title too long even for the widest figure is wrapped
    title = "\n".join(textwrap.fill(line, TITLE_CHARS) for line in title.split("\n"))
    longest = max(len(line) for line in title.split("\n"))
    width = min(14.0, max(3 + 0.12 * T, 2.5 + INCH_PER_TITLE_CHAR * longest))  # 2.5: labels, colour bar
    rows = len(units)
    height = min(11.0, max(3.0, 2.0 + 0.15 * rows))  # room for a readable label on every row
    fig = ax.figure if ax is not None else Figure(figsize=(width, height), layout="constrained")
    ax = ax if ax is not None else fig.add_subplot()
    bound = max(float(np.abs(s).max()), 1e-12)
    im = ax.imshow(s.T, aspect="auto", cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest", origin="lower")
    fig.colorbar(im, ax=ax, label="activation")
    ax.set_xlabel("time step t")
    ax.set_ylabel("hidden unit")
    step = 1 if rows <= 64 else -(-rows // 48)  # every row labelled while they fit
    ax.set_yticks(range(0, rows, step), [str(j) for j in units[::step]], fontsize=8 if rows <= 40 else 6)
    ax.set_title(title, fontsize=10)
    if tick_labels is not None:
        if len(tick_labels) != T:
            raise ValueError(f"tick_labels needs one label per step. Expected {T}, got {len(tick_labels)}")
        visible = {" ": "␣", "\n": "⏎", "\t": "⇥"}  # blanks would leave a gap on the axis
        ax.set_xticks(range(T), [visible.get(c, c) for c in tick_labels], fontsize=9 if T <= 60 else 7)
    for m in marks:
        ax.axvline(m, color="black", linestyle="--", linewidth=1)
    return fig
