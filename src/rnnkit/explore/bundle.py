"""A trace packed for the page: one JSON document, the same for the server and the --html file.

The activations travel as bytes: each unit's values over the text are mapped to 0..255 between its
own minimum and maximum (``v ≈ lo + q (hi - lo) / 255``, an error of at most (hi - lo) / 510,
invisible in a colour), unit-major so that one unit's T values are contiguous, and base64-encoded.
An LSTM 1x512 over 10,000 characters is then 31 MB of bytes instead of 123 MB of float32.
Everything the page ranks without a selection (feature scan, gate saturation) is computed here in
Python (`rnnkit.explore.analysis`) and sent as numbers; the unit search runs in the page on
the bytes (it depends on the selection), with the formula of ``analysis.separation``.
"""

from __future__ import annotations

import base64

import numpy as np

from rnnkit.explore import analysis
from rnnkit.viz.trace import Trace

#: the longest text the explorer traces at once (an LSTM 1x512 keeps 6 x 512 values a character)
MAX_CHARS = 20_000
TOP_K = 5  # predictions shown when hovering a character
FORMAT = "rnnkit-explore"


def check_text(text: str, vocab, what: str = "the text") -> None:
    """A clear ValueError, before any work, for a text the explorer cannot trace."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string, got {type(text).__name__}")
    if not text:
        raise ValueError(f"{what} is empty; type or load at least one character")
    if len(text) > MAX_CHARS:
        raise ValueError(f"{what} has {len(text):,} characters; the explorer traces at most "
                         f"{MAX_CHARS:,} at a time (cut it, or load a part)")
    unknown = vocab.unknown(text)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise ValueError(f"{what} has {len(unknown)} character(s) outside the model's vocabulary "
                         f"of {len(vocab)}: {shown}; the model knows only the characters it was "
                         "trained on")


def quantize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values (T, H) -> (q (H, T) uint8, lo (H,), hi (H,)), q = round((v - lo) / (hi - lo) * 255)."""
    lo, hi = values.min(0), values.max(0)
    width = np.where(hi > lo, hi - lo, 1.0).astype(values.dtype)
    q = np.rint((values - lo) * (255.0 / width)).clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(q.T), lo.astype(np.float64), hi.astype(np.float64)


def dequantize(q: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The page's view of the values: (H, T) bytes back to (T, H) floats."""
    return (lo[:, None] + q.astype(np.float64) * ((hi - lo) / 255.0)[:, None]).T


def _floats(a, digits: int | None = None) -> list[float]:
    a = np.asarray(a, dtype=np.float64)
    return [round(float(x), digits) for x in a] if digits is not None else a.tolist()


def _hit(hit: analysis.Hit, index: dict) -> dict:
    return {"slot": index[(hit.kind, hit.layer, hit.direction)], "unit": hit.unit,
            "score": round(hit.score, 4)}


def _slots(tr: Trace) -> list[dict]:
    out = []
    for kind, layer, direction in analysis.slots(tr):
        v = tr[kind][layer, direction].numpy()  # (T, H), no copy
        q, lo, hi = quantize(v)
        style, scale = analysis.scale(kind, v)
        out.append({"kind": kind, "layer": layer, "direction": direction, "units": v.shape[1],
                    "style": style, "scale": _floats(scale), "lo": _floats(lo), "hi": _floats(hi),
                    "q": base64.b64encode(q.tobytes()).decode("ascii")})
    return out


def _predictions(tr: Trace) -> dict:
    probs = tr.probs.double()  # (T, V)
    k = min(TOP_K, probs.shape[1])
    p, idx = probs.topk(k, dim=1)  # (T, k)
    following = probs[:-1].gather(1, tr.ids[1:, None])[:, 0]  # p of the character that follows
    nll = -following.log()
    return {"k": k, "ids": idx.flatten().tolist(), "p": _floats(p.flatten(), 4),
            "next_p": _floats(following, 4),
            "loss": float(nll.mean()) if len(nll) else None}


def make_bundle(tr: Trace, title: str = "") -> dict:
    """The JSON-ready document the page draws: text, activations, predictions, rankings."""
    if tr.chars is None or len(tr.text) != len(tr.ids):
        raise ValueError("the explorer needs a trace of a text: trace(model, text, vocab)")
    index = {slot: i for i, slot in enumerate(analysis.slots(tr))}
    features = analysis.feature_scan(tr)
    constant = {name for name, f in analysis.text_features(tr.text).items() if f.std() == 0}
    return {
        "format": FORMAT, "version": 1, "title": title, "text": tr.text,
        "model": {"cell": tr.cell, "layers": tr.num_layers, "directions": tr.num_directions,
                  "hidden": {k: int(v.shape[-1]) for k, v in tr.states.items()},
                  "vocab": list(tr.chars)},
        "slots": _slots(tr),
        "predict": _predictions(tr),
        "features": [{"name": name, "hits": [_hit(h, index) for h in hits],
                      "note": "constant over this text" if name in constant else ""}
                     for name, hits in features.items()],
        "saturation": [{"slot": index[(s["kind"], s["layer"], s["direction"])],
                        "left": _floats(s["left"], 4), "right": _floats(s["right"], 4)}
                       for s in analysis.saturation(tr)],
        "search": {"eps": analysis.SEARCH_EPS, "top": 10},
        "limits": {"max_chars": MAX_CHARS},
    }
