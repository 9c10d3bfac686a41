"""The unrolled diagram: Mermaid text parses as a flowchart with one node per state; images render."""

import json
import re

import matplotlib.image
import pytest

from rnnkit.cli import main
from rnnkit.viz.diagram import save_diagram, to_mermaid, unrolled_graph

NODE = re.compile(r'^\s*([A-Za-z_][\w]*)\s*(\[\"|\(\"|\(\[\")(.*?)(\"\]|\"\)|\"\]\))\s*$')
EDGE = re.compile(r"^\s*([A-Za-z_]\w*)\s*-->\|([^|]+)\|\s*([A-Za-z_]\w*)\s*$")
STATE = re.compile(r"^h_l(\d+)_([fb])_t(\d+)$")


def parse_flowchart(text: str):
    """A small Mermaid flowchart parser: header, node declarations, labelled edges, %% comments."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("%%")]
    assert re.match(r"^(flowchart|graph) (LR|RL|TB|TD|BT)$", lines[0]), lines[0]
    nodes, edges = {}, []
    for ln in lines[1:]:
        if m := EDGE.match(ln):
            edges.append((m[1], m[2].strip(), m[3]))
        elif m := NODE.match(ln):
            assert m[1] not in nodes, f"node {m[1]} declared twice"
            assert '"' not in m[3]
            nodes[m[1]] = m[3]
        else:
            raise AssertionError(f"not a node or an edge: {ln!r}")
    return nodes, edges


@pytest.mark.parametrize(
    "cell,layers,bidirectional,steps", [("lstm", 2, True, 3), ("gru", 1, False, 4), ("rnn", 3, True, 2)]
)
def test_mermaid_has_one_node_per_state(cell, layers, bidirectional, steps):
    nodes, edges = parse_flowchart(to_mermaid(unrolled_graph(cell, layers, bidirectional, steps)))
    D = 2 if bidirectional else 1
    dirs = "fb"[:D]
    states = {(int(m[1]), m[2], int(m[3])) for n in nodes if (m := STATE.match(n))}
    assert states == {(l, d, t) for l in range(layers) for d in dirs for t in range(steps)}
    assert sum(bool(STATE.match(n)) for n in nodes) == layers * D * steps  # each exactly once
    assert {f"x{t}" for t in range(steps)} | {f"y{t}" for t in range(steps)} <= set(nodes)
    assert all(a in nodes and b in nodes for a, _, b in edges)

    kinds = [label.split(":")[0] for _, label, _ in edges]
    assert kinds.count("q") == layers * D * steps  # one recurrent edge into every state
    assert kinds.count("v") == steps * D * (1 + (layers - 1) * D)  # from x, then from every direction below
    assert kinds.count("u") == steps * D
    for a, label, b in edges:
        if label.startswith("q"):
            assert label == ("q: h, c" if cell == "lstm" else "q: h")  # the state carried
            mb = STATE.match(b)
            ma = STATE.match(a)
            if ma:  # forward runs t -> t+1, backward t+1 -> t, within one layer and direction
                assert (ma[1], ma[2]) == (mb[1], mb[2])
                assert int(mb[3]) - int(ma[3]) == (1 if mb[2] == "f" else -1)
            else:
                assert a == f"h_l{mb[1]}_{mb[2]}_init"
                assert int(mb[3]) == (0 if mb[2] == "f" else steps - 1)


def test_images_render(tmp_path):
    g = unrolled_graph("lstm", 2, True, 3)
    png = save_diagram(g, tmp_path / "d.png")
    img = matplotlib.image.imread(png)
    assert png.stat().st_size > 10_000 and img.shape[0] > 300 and img.shape[1] > 600
    assert img[..., :3].std() > 0.05  # not a blank canvas
    svg = save_diagram(g, tmp_path / "d.svg")
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    with pytest.raises(ValueError, match=r"\.png or \.svg, got 'd.pdf'"):
        save_diagram(g, tmp_path / "d.pdf")


def test_cli_prints_mermaid_and_draws(tmp_path, capsys):
    out = tmp_path / "lstm.png"
    assert main(["diagram", "--cell", "lstm", "--num-layers", "2", "--bidirectional", "--steps", "3",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    nodes, _ = parse_flowchart(text.split("%% image")[0])
    assert sum(bool(STATE.match(n)) for n in nodes) == 12
    assert out.stat().st_size > 10_000


def test_cli_from_a_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"cell": "gru", "num_layers": 3, "hidden_size": 16}))
    assert main(["diagram", "--run", str(run), "--steps", "2"]) == 0
    text = capsys.readouterr().out
    nodes, _ = parse_flowchart(text)
    assert sum(bool(STATE.match(n)) for n in nodes) == 6
    assert "%% GRU (I=?, H=16), 3 layers, unrolled over 2 steps" in text
    (run / "config.json").write_text(json.dumps({"cell": "transformer"}))
    assert main(["diagram", "--run", str(run)]) == 2
    assert "config.json: cell must be one of rnn, lstm, gru; got 'transformer'" in capsys.readouterr().err
    assert main(["diagram", "--steps", "0"]) == 2
