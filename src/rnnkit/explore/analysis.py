"""What the explorer ranks, computed from a `rnnkit.viz.trace.Trace` (one source of truth).

* `feature_scan`: Karpathy, Johnson & Fei-Fei (2015) looked for cells that track simple
  properties of the text. For each property p_t of `text_features` and each unit u (every
  kind, layer and direction), the Pearson correlation r = corr_t(v_u(t), p_t).
* `unit_search`: LSTMVis (Strobelt et al. 2018) matches a selected stretch of text against the
  units' on/off patterns. Here each unit gets the standardised difference between its values inside
  the selection and outside it (Cohen's d with a floor on the spread):

      d_u = (mean_in - mean_out) / sqrt((var_in + var_out) / 2 + EPS^2)

  EPS keeps a unit that hardly moves (a saturated gate, say) from ranking high on a difference
  of a thousandth. The page computes the same d in JavaScript; tests/explore compares the two.
* `saturation`: Karpathy et al.'s figure 4: for each sigmoid gate, the fraction of steps
  each unit spends left-saturated (< 0.1) and right-saturated (> 0.9).
* `colour`: the colour of a value on the page (tests check the browser against it).

A hit names a unit by (kind, layer, direction, unit); kinds are h, c and the gates (trace.KINDS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnkit.viz.trace import SIGMOID_GATES, Trace

SEARCH_EPS = 0.01
OPENING, CLOSING = "([{", ")]}"
#: end colours of the page's scales (RGB): positive, negative (diverging) and the gates' scale
POSITIVE, NEGATIVE, GATE = (214, 96, 77), (67, 147, 195), (90, 174, 97)


@dataclass(frozen=True)
class Hit:
    """A unit and its score (a correlation r for the feature scan, d for the unit search)."""

    kind: str
    layer: int
    direction: int
    unit: int
    score: float


def slots(tr: Trace) -> list[tuple[str, int, int]]:
    """Every (kind, layer, direction) of a trace, in the order the page numbers them."""
    return [(k, li, d) for k in tr.kinds for li in range(tr.num_layers)
            for d in range(tr.num_directions)]


def _values(tr: Trace, slot: tuple[str, int, int]) -> np.ndarray:
    kind, layer, direction = slot
    return tr[kind][layer, direction].numpy().astype(np.float64)  # (T, H)


def text_features(text: str) -> dict[str, np.ndarray]:
    """Simple properties of the text at each character (after reading it), each (T,) float64.

    in quotes: 1 from an opening '"' up to (not including) its closing one; bracket depth: open
    ( [ { minus closed, never below 0; position in line: characters since the last newline (0 at
    the newline itself); start of word: 1 on a letter or digit that follows anything else.
    """
    T = len(text)
    quote, depth, column, start = (np.zeros(T) for _ in range(4))
    inside, level, col, prev_word = False, 0, 0, False
    for t, ch in enumerate(text):
        if ch == '"':
            inside = not inside
        if ch in OPENING:
            level += 1
        elif ch in CLOSING:
            level = max(level - 1, 0)
        col = 0 if ch == "\n" else col + 1
        word = ch.isalnum()
        quote[t], depth[t], column[t] = inside, level, col
        start[t] = word and not prev_word
        prev_word = word
    return {"in quotes": quote, "bracket depth": depth, "position in line": column,
            "start of word": start}


def _ranked(hits: list[Hit], top: int) -> list[Hit]:
    # ties (and NaN-free equal scores) keep slot order, then unit order: the same ranking every run
    order = sorted(range(len(hits)), key=lambda i: -abs(hits[i].score))
    return [hits[i] for i in order[:top]]


def _hits(slot: tuple[str, int, int], scores: np.ndarray) -> list[Hit]:
    kind, layer, direction = slot
    return [Hit(kind, layer, direction, u, float(s)) for u, s in enumerate(scores)]


def correlations(values: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Pearson r of each column of values (T, H) with each row of features (F, T): (F, H).
    A constant column or feature has no correlation: 0."""
    x = values - values.mean(0)  # (T, H)
    f = features - features.mean(1, keepdims=True)  # (F, T)
    denom = np.sqrt(np.outer(np.einsum("ft,ft->f", f, f), np.einsum("th,th->h", x, x)))  # (F, H)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (f @ x) / denom
    return np.where(denom > 0, r, 0.0)


def feature_scan(tr: Trace, top: int = 10) -> dict[str, list[Hit]]:
    """For each text feature, the ``top`` units by |r|. A feature that is constant over the text
    (no quotes in it, say) has no correlation and gets an empty list."""
    if len(tr.text) != len(tr.ids):
        raise ValueError("feature_scan needs the text itself: trace(model, text, vocab) with a str")
    features = text_features(tr.text)
    varied = [name for name, f in features.items() if f.std() > 0]
    found: dict[str, list[Hit]] = {name: [] for name in features}
    for slot in slots(tr):
        if varied:
            r = correlations(_values(tr, slot), np.stack([features[n] for n in varied]))
            for name, row in zip(varied, r):
                found[name] += _hits(slot, row)
    return {name: _ranked(hits, top) for name, hits in found.items()}


def selection_mask(T: int, selection) -> np.ndarray:
    """A boolean mask (T,) from a (start, end) range (end excluded) or a mask."""
    if isinstance(selection, tuple):
        start, end = selection
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= T):
            raise ValueError(f"selection must be (start, end) with 0 <= start < end <= {T}; "
                             f"got {selection}")
        mask = np.zeros(T, bool)
        mask[start:end] = True
        return mask
    mask = np.asarray(selection, bool)
    if mask.shape != (T,):
        raise ValueError(f"selection mask must have shape ({T},), got {mask.shape}")
    return mask


def separation(values: np.ndarray, mask: np.ndarray, eps: float = SEARCH_EPS) -> np.ndarray:
    """Cohen's d (with a floor ``eps`` on the spread) of each column of values (T, H)."""
    inside, outside = values[mask], values[~mask]
    spread = np.sqrt((inside.var(0) + outside.var(0)) / 2 + eps * eps)
    return (inside.mean(0) - outside.mean(0)) / spread


def unit_search(tr: Trace, selection, top: int = 10) -> list[Hit]:
    """The ``top`` units whose values best separate the selection from the rest of the text."""
    T = len(tr.ids)
    mask = selection_mask(T, selection)
    if not 0 < mask.sum() < T:
        raise ValueError(f"select at least one character and leave at least one out; "
                         f"got {int(mask.sum())} of {T}")
    hits: list[Hit] = []
    for slot in slots(tr):
        hits += _hits(slot, separation(_values(tr, slot), mask))
    return _ranked(hits, top)


def saturation(tr: Trace, low: float = 0.1, high: float = 0.9) -> list[dict]:
    """For each sigmoid gate, layer and direction: per unit, the fraction of steps below ``low``
    (left-saturated) and above ``high`` (right-saturated), each (H,)."""
    out = []
    for kind, layer, direction in slots(tr):
        if kind in SIGMOID_GATES:
            v = tr[kind][layer, direction].numpy()  # (T, H), no copy: only compared
            out.append({"kind": kind, "layer": layer, "direction": direction,
                        "left": (v < low).mean(0), "right": (v > high).mean(0)})
    return out


def scale(kind: str, values: np.ndarray) -> tuple[str, np.ndarray]:
    """How the page colours a slot's units: ("gate", 1) for sigmoid gates, whose values lie in
    (0, 1); otherwise ("diverging", max(1, max_t |v|)) per unit, so tanh-bounded values (h, g, n)
    share one scale and a cell state that grows past 1 is scaled to its own range."""
    if kind in SIGMOID_GATES:
        return "gate", np.ones(values.shape[1])
    return "diverging", np.maximum(1.0, np.abs(values).max(0))


def colour(value: float, style: str, scale_: float) -> tuple[int, int, int]:
    """The background of a character on the page: white at 0, the scale's end colour at ±scale."""
    if style == "gate":
        t, end = min(max(value / scale_, 0.0), 1.0), GATE
    else:
        t = min(max(value / scale_, -1.0), 1.0)
        t, end = abs(t), (POSITIVE if t >= 0 else NEGATIVE)
    return tuple(int(np.floor(255 + t * (e - 255) + 0.5)) for e in end)
