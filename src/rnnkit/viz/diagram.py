"""The unrolled computation graph of a (multi-layer, bidirectional) RNN, as Mermaid text and as an image.

One node per state ``h[l, d, t]`` (layer l, direction d = fwd/bwd, time t), one per input ``x_t`` and
output ``y_t``, and one initial state per layer and direction. Edges follow the general recurrence

    h[l, d, t] = σ( v(input) + q(h[l, d, t ∓ 1]) ),    y_t = u(h[L-1, ·, t])

``v`` (input map) enters from the layer below (from ``x_t`` at layer 0; from both directions of the
layer below when bidirectional), ``q`` (recurrent map) carries the state along time (left to right
for fwd, right to left for bwd), ``u`` (output map) reads the top layer. An LSTM carries (h, c).

The image is drawn with matplotlib alone (no network, no mermaid-cli), from the same node/edge list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from rnnkit.checks import check_choice, check_positive_int

CELL_NAMES = {"rnn": "Elman RNN", "lstm": "LSTM", "gru": "GRU"}
DIRS = ("f", "b")


@dataclass(frozen=True)
class Node:
    id: str
    label: str
    kind: str  # "input" | "init" | "state" | "output"
    layer: int | None = None
    direction: str | None = None  # "f" | "b"
    t: int | None = None


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    label: str  # "v" | "q" | "u"


@dataclass
class UnrolledGraph:
    cell: str
    num_layers: int
    bidirectional: bool
    steps: int
    input_size: int | None = None
    hidden_size: int | None = None
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    @property
    def carried(self) -> str:
        """What q carries from step to step."""
        return "h, c" if self.cell == "lstm" else "h"

    @property
    def title(self) -> str:
        layers = f"{self.num_layers} layer{'s' if self.num_layers > 1 else ''}"
        dirs = ", bidirectional" if self.bidirectional else ""
        sizes = ""
        if self.input_size or self.hidden_size:
            sizes = f" (I={self.input_size or '?'}, H={self.hidden_size or '?'})"
        return f"{CELL_NAMES[self.cell]}{sizes}, {layers}{dirs}, unrolled over {self.steps} steps"


def state_id(layer: int, direction: str, t: int | str) -> str:
    """Mermaid node id of h[layer, direction, t]; ``t="init"`` names the initial state."""
    return f"h_l{layer}_{direction}_" + ("init" if t == "init" else f"t{t}")


def unrolled_graph(
    cell: str = "lstm",
    num_layers: int = 1,
    bidirectional: bool = False,
    steps: int = 3,
    input_size: int | None = None,
    hidden_size: int | None = None,
) -> UnrolledGraph:
    """Nodes and edges of the network unrolled over ``steps`` time steps."""
    cell = check_choice("cell", cell.lower() if isinstance(cell, str) else cell, CELL_NAMES)
    check_positive_int("num_layers", num_layers)
    check_positive_int("steps", steps)
    if steps > 32 or num_layers > 8:
        raise ValueError(f"too large to draw: at most 32 steps and 8 layers, got {steps} and {num_layers}")
    g = UnrolledGraph(cell, num_layers, bidirectional, steps, input_size, hidden_size)
    dirs = DIRS if bidirectional else DIRS[:1]
    carried = g.carried
    arrow = {"f": "fwd", "b": "bwd"}
    for t in range(steps):
        g.nodes.append(Node(f"x{t}", f"x[t={t}]", "input", t=t))
    for layer in range(num_layers):
        for d in dirs:
            g.nodes.append(Node(state_id(layer, d, "init"), f"{carried} init, layer {layer} {arrow[d]}", "init", layer, d))
            for t in range(steps):
                g.nodes.append(Node(state_id(layer, d, t), f"{carried}[layer {layer}, {arrow[d]}, t={t}]", "state", layer, d, t))
    for t in range(steps):
        g.nodes.append(Node(f"y{t}", f"y[t={t}]", "output", t=t))

    for layer in range(num_layers):
        for d in dirs:
            # v: the input map, from x_t or from every direction of the layer below
            for t in range(steps):
                sources = [f"x{t}"] if layer == 0 else [state_id(layer - 1, e, t) for e in dirs]
                g.edges += [Edge(s, state_id(layer, d, t), "v") for s in sources]
            # q: the recurrent map, along time in this direction's order
            order = list(range(steps)) if d == "f" else list(range(steps - 1, -1, -1))
            prev = state_id(layer, d, "init")
            for t in order:
                g.edges.append(Edge(prev, state_id(layer, d, t), "q"))
                prev = state_id(layer, d, t)
    for t in range(steps):  # u: the output map reads the top layer
        g.edges += [Edge(state_id(num_layers - 1, d, t), f"y{t}", "u") for d in dirs]
    return g


def to_mermaid(g: UnrolledGraph) -> str:
    """Mermaid flowchart text (paste into Markdown inside a ```mermaid block)."""
    shapes = {"input": ('["', '"]'), "output": ('["', '"]'), "state": ('("', '")'), "init": ('(["', '"])')}
    lines = [
        "flowchart LR",
        f"    %% {g.title}",
        f"    %% v: input map, q: recurrent map (carries {g.carried}), u: output map",
    ]
    for n in g.nodes:
        left, right = shapes[n.kind]
        lines.append(f"    {n.id}{left}{n.label}{right}")
    for e in g.edges:
        label = f"q: {g.carried}" if e.label == "q" else e.label
        lines.append(f"    {e.src} -->|{label}| {e.dst}")
    return "\n".join(lines) + "\n"


# ---- drawing --------------------------------------------------------------------------------------

_COLOURS = {"input": "#dbe9f6", "output": "#fde2c8", "state": "#d9f0d3", "init": "#eeeeee"}
_EDGE_COLOURS = {"v": "#3a6ea5", "q": "#2e7d32", "u": "#c05a00"}


def _layout(g: UnrolledGraph) -> tuple[dict[str, tuple[float, float]], float]:
    """Node centres and the state-box width. Column = time (initial states in an extra column on
    the side they start from); rows = input, each layer's fwd (and bwd) row, output. When
    bidirectional, fwd boxes sit left and bwd boxes right of the column so no edge crosses a box."""
    bi = g.bidirectional
    col_w, box_w, shift = (3.6, 1.3, 0.75) if bi else (2.6, 2.0, 0.0)
    dirs = DIRS if bi else DIRS[:1]
    row_of, row = {}, 1.0
    for layer in range(g.num_layers):
        for d in dirs:
            row_of[(layer, d)] = row
            row += 1.0
        row += 0.6  # a gap between layers
    top = row + 0.4
    dx = {"f": -shift, "b": shift}
    pos: dict[str, tuple[float, float]] = {}
    for n in g.nodes:
        if n.kind == "input":
            pos[n.id] = ((n.t + 1) * col_w, 0.0)
        elif n.kind == "output":
            pos[n.id] = ((n.t + 1) * col_w, top)
        elif n.kind == "init":
            x = 0.0 if n.direction == "f" else (g.steps + 1) * col_w
            pos[n.id] = (x + dx[n.direction], row_of[(n.layer, n.direction)])
        else:
            pos[n.id] = ((n.t + 1) * col_w + dx[n.direction], row_of[(n.layer, n.direction)])
    return pos, box_w


def draw_diagram(g: UnrolledGraph) -> Figure:
    """A matplotlib Figure of the unrolled graph (no pyplot state is touched)."""
    pos, box_w = _layout(g)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    width, height = max(xs) - min(xs) + 2.6, max(ys) - min(ys) + 2.2
    fig = Figure(figsize=(max(6.0, width * 0.9), max(3.5, height * 0.85)), dpi=100)
    ax = fig.add_axes((0, 0, 1, 0.9))
    ax.set_xlim(min(xs) - 1.3, max(xs) + 1.3)
    ax.set_ylim(min(ys) - 0.9, max(ys) + 0.6)
    ax.set_axis_off()
    box_h, io_w = 0.56, 1.0
    half_w = {n.id: (box_w if n.kind in ("state", "init") else io_w) / 2 for n in g.nodes}
    for n in g.nodes:
        x, y = pos[n.id]
        w = 2 * half_w[n.id]
        ax.add_patch(
            FancyBboxPatch(
                (x - w / 2, y - box_h / 2), w, box_h, boxstyle="round,pad=0.02,rounding_size=0.15",
                facecolor=_COLOURS[n.kind], edgecolor="#444444", linewidth=0.8, zorder=2,
            )
        )
        ax.text(x, y, _short_label(g, n), ha="center", va="center", fontsize=8.5, zorder=3)
    for e in g.edges:
        (x0, y0), (x1, y1) = pos[e.src], pos[e.dst]
        if e.label == "q":  # along a row: leave and enter through the sides
            sgn = 1 if x1 > x0 else -1
            a, b = (x0 + sgn * half_w[e.src], y0), (x1 - sgn * half_w[e.dst], y1)
        else:  # up a column: leave through the top, enter through the bottom
            a, b = (x0, y0 + box_h / 2), (x1, y1 - box_h / 2)
        ax.add_patch(
            FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10, color=_EDGE_COLOURS[e.label],
                            linewidth=1.0, shrinkA=1, shrinkB=1, zorder=1)
        )
        mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
        ax.text(mx, my, e.label, fontsize=8, color=_EDGE_COLOURS[e.label], ha="center", va="center",
                fontweight="bold", zorder=3, bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none"))
    fig.suptitle(g.title, fontsize=12, y=0.98)
    ax.text(
        (min(xs) + max(xs)) / 2, min(ys) - 0.7,
        f"v: input map (W_ih · input + b_ih)     q: recurrent map (W_hh · h + b_hh), carries ({g.carried})"
        "     u: output map (read-out of the top layer)"
        + ("     ℓ: layer, → forward, ← backward" if g.bidirectional else "     ℓ: layer"),
        ha="center", va="center", fontsize=8.5, color="#333333",
    )
    return fig


def _short_label(g: UnrolledGraph, n: Node) -> str:
    arrow = {"f": "→", "b": "←"}
    if n.kind == "input":
        return f"x{_sub(n.t)}"
    if n.kind == "output":
        return f"y{_sub(n.t)}"
    sym = "h,c" if g.cell == "lstm" else "h"
    where = f"ℓ{n.layer}" + (f" {arrow[n.direction]}" if g.bidirectional else "")
    if n.kind == "init":
        return f"{sym} init  {where}"
    return f"{sym}  {where}  t={n.t}"


def _sub(i: int) -> str:
    return str(i).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


def save_diagram(g: UnrolledGraph, path: str | Path) -> Path:
    """Draw the diagram into ``path`` (.png or .svg, chosen by the suffix), atomically."""
    from rnnkit.data.atomic import atomic_write

    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"the diagram file must end in .png or .svg, got {path.name!r}")
    fig = draw_diagram(g)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, format=path.suffix[1:].lower()))
    return path
