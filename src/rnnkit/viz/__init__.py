"""Pictures that explain RNNs: unrolled diagrams (Mermaid and image), gradient norm per time step,
hidden-state heat maps, training curves. All plots use matplotlib ``Figure`` objects directly (no
pyplot state, no display needed), so they work on a headless machine."""

# rnnkit.viz.trace(model, text): every activation of a char LM over a text (the explorer's data
# layer). The function shadows its module's name here; import the module's other names with
# ``from rnnkit.viz.trace import Trace, trace_layer``.
from rnnkit.viz.trace import trace  # noqa: E402

__all__ = ["trace"]
