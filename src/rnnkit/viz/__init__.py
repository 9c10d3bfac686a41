"""Pictures that explain RNNs: unrolled diagrams (Mermaid and image), gradient norm per time step,
hidden-state heat maps, training curves. All plots use matplotlib ``Figure`` objects directly (no
pyplot state, no display needed), so they work on a headless machine."""
