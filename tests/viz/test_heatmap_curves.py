"""Hidden-state heat map and training curves: right numbers, labelled axes, images on disk."""

import matplotlib.image
import numpy as np
import pytest
import torch

from rnnkit.cli import main
from rnnkit.models.tagger import Tagger
from rnnkit.viz.curves import plot_curves, read_metrics
from rnnkit.viz.heatmap import hidden_states, plot_hidden_states


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_hidden_states_are_the_layer_outputs(cell):
    torch.manual_seed(0)
    model = Tagger(3, 5, 2, cell=cell, num_layers=2, bidirectional=True).double()
    x = torch.randn(2, 7, 3, dtype=torch.double)
    out, _ = model.rnn(x)  # (B, T, 2H): top layer, [fwd, bwd]
    torch.testing.assert_close(hidden_states(model, lambda m: m(x)), out[..., :5])
    torch.testing.assert_close(hidden_states(model, lambda m: m(x), direction=1), out[..., 5:])
    assert hidden_states(model, lambda m: m(x), layer=0).shape == (2, 7, 5)
    if cell == "gru":
        with pytest.raises(ValueError, match="only an LSTM has a cell state"):
            hidden_states(model, lambda m: m(x), cell_state=True)


def test_heatmap_plot():
    states = torch.linspace(-1, 1, 12 * 4).reshape(12, 4)  # (T, H)
    fig = plot_hidden_states(states, marks=[3], tick_labels=list("hello world!"))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time step t" and ax.get_ylabel() == "hidden unit"
    shown = ax.get_images()[0].get_array()
    np.testing.assert_allclose(np.asarray(shown), states.T.numpy(), rtol=1e-6)  # rows = units
    assert [t.get_text() for t in ax.get_xticklabels()][:7] == list("hello␣w")
    assert len(fig.axes) == 2  # the heat map and its colour bar
    with pytest.raises(ValueError, match="Expected 12, got 3"):
        plot_hidden_states(states, tick_labels=["a", "b", "c"])


def test_curves_tolerate_missing_columns_and_cells(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text(
        "step,train_loss,val_loss,lr,note,accuracy\n"
        "0,2.0,,0.01,start,\n"
        "10,1.0,1.5,0.01,,0.4\n"
        "20,0.5,,0.005,,\n"
        "30,0.25,0.9,0.005,end,0.7\n"
    )
    cols = read_metrics(run)
    assert "note" not in cols and np.isnan(cols["val_loss"][0])
    fig = plot_curves(run)
    left, right = fig.axes
    assert left.get_xlabel() == "step" and left.get_ylabel() == "loss"
    lines = {ln.get_label(): ln for ln in left.get_lines()}
    assert set(lines) == {"train_loss", "val_loss"}
    assert list(lines["val_loss"].get_xdata()) == [10, 30]  # empty cells skipped
    assert list(lines["val_loss"].get_ydata()) == [1.5, 0.9]
    assert [ln.get_label() for ln in right.get_lines()] == ["accuracy"]  # lr left out


def test_curves_without_a_step_column(tmp_path):
    (tmp_path / "metrics.csv").write_text("loss\n3\n2\n1\n")
    (ax,) = plot_curves(tmp_path).axes
    assert ax.get_xlabel() == "row" and list(ax.get_lines()[0].get_ydata()) == [3, 2, 1]


def test_cli_task_run_folder_then_curves_heatmap_gradflow(tmp_path, capsys):
    run = tmp_path / "adding"
    assert main(["task", "adding", "--length", "10", "--steps", "20", "--eval-every", "10",
                 "--hidden-size", "8", "--out-dir", str(run)]) == 0
    assert {"config.json", "metrics.csv", "model.safetensors"} <= {p.name for p in run.iterdir()}
    assert main(["curves", str(run)]) == 0
    img = matplotlib.image.imread(run / "curves.png")
    assert img.shape[0] > 200 and img[..., :3].std() > 0.05
    heat = tmp_path / "heat.png"
    assert main(["heatmap", "--run", str(run), "--out", str(heat)]) == 0
    assert heat.stat().st_size > 5_000
    assert main(["heatmap", "--length", "6", "--train-steps", "2", "--hidden-size", "4",
                 "--cell-state", "--out", str(heat)]) == 0
    grad = tmp_path / "grad.svg"
    assert main(["gradflow", "--run", str(run), "--out", str(grad)]) == 0
    assert "<svg" in grad.read_text()
    capsys.readouterr()
    assert main(["curves", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["heatmap", "--run", str(tmp_path), "--out", str(heat)]) == 2


def test_cli_pictures_of_a_char_lm_run(tmp_path, capsys):
    # a char-LM run folder written with the training package's own functions
    from rnnkit.data.vocab import Vocab
    from rnnkit.models.charlm import CharLM
    from rnnkit.train.checkpoint import save_weights, write_config, write_vocab
    from rnnkit.train.config import TrainConfig

    vocab = Vocab.from_text("abc de")
    torch.manual_seed(0)
    model = CharLM(len(vocab), cell="gru", hidden_size=6, num_layers=2, embed_size=4)
    write_config(tmp_path, TrainConfig(cell="gru", hidden_size=6, num_layers=2, embed_size=4), model.shape())
    write_vocab(tmp_path, vocab)
    save_weights(tmp_path, model.state_dict(), step=1)

    heat = tmp_path / "heat.png"
    assert main(["heatmap", "--run", str(tmp_path), "--text", "abc dead", "--out", str(heat)]) == 0
    assert heat.stat().st_size > 5_000
    assert main(["gradflow", "--run", str(tmp_path), "--text", "bad cab", "--out", str(tmp_path / "g.png")]) == 0
    assert "layer 1" in capsys.readouterr().out  # both layers measured
    assert main(["diagram", "--run", str(tmp_path), "--steps", "2"]) == 0
    assert "%% GRU (I=4, H=6), 2 layers" in capsys.readouterr().out
    assert main(["heatmap", "--run", str(tmp_path), "--text", "xyz", "--out", str(heat)]) == 2
    assert "at least 2 characters from the model's vocabulary" in capsys.readouterr().err


@pytest.mark.parametrize("title", ["char LM LSTM h_t, top layer (charlm-20261122-052753)", "x" * 400])
@pytest.mark.parametrize("units", [8, 384])
def test_heatmap_title_fits_inside_the_figure(title, units):
    """A short text (few columns) with a long title: the title is drawn whole, not cut at the
    figure's edges (a narrow figure used to clip it); an over-long title is wrapped."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plot_hidden_states(torch.randn(11, units), title=title, tick_labels=list("def main():"))
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    box = fig.axes[0].title.get_window_extent(canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1, (box, fig.bbox)
