"""The activation explorer: see inside a trained character LM, in the browser.

``rnnkit explore RUN_DIR`` serves a page on 127.0.0.1 that colours a text by any unit (h, c or a
gate), shows the next-character predictions under the mouse, ranks units by how well they separate
a selected stretch of text (LSTMVis, Strobelt et al. 2018) and by how well they follow simple
properties of the text (Karpathy, Johnson & Fei-Fei 2015), and draws each gate's saturation.
``--html OUT`` writes the same page as one file. The data layer is `rnnkit.viz.trace.trace`;
the rankings are in `rnnkit.explore.analysis`, usable from Python:

    from rnnkit.train import load_model
    from rnnkit.viz.trace import trace
    from rnnkit.explore import feature_scan, unit_search

    model, vocab, cfg = load_model("runs/shakespeare")
    tr = trace(model, text, vocab)
    feature_scan(tr)["position in line"][0]      # Hit(kind, layer, direction, unit, score=r)
    unit_search(tr, (120, 160))[0]               # the unit that best marks characters 120..159
"""

from rnnkit.explore.analysis import Hit, feature_scan, saturation, text_features, unit_search
from rnnkit.explore.bundle import MAX_CHARS, make_bundle
from rnnkit.explore.server import Explorer, ExploreServer, render_page, write_html

__all__ = [
    "Hit", "feature_scan", "saturation", "text_features", "unit_search", "MAX_CHARS",
    "make_bundle", "Explorer", "ExploreServer", "render_page", "write_html",
]
