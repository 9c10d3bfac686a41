"""Pictures a learner can read: heat maps show chosen, labelled units; curves keep losses and
accuracies on separate axes with labelled baselines; no gradient line leaves its axis."""

import numpy as np
import pytest
import torch

import rnnkit.cli.viz
import rnnkit.cli.viz_models
from rnnkit.cli import main
from rnnkit.cli.viz_models import choose_units
from rnnkit.viz.curves import plot_curves
from rnnkit.viz.gradflow import plot_gradient_norms
from rnnkit.viz.heatmap import most_varying_units, plot_hidden_states


@pytest.fixture
def figures(monkeypatch):
    """The figures the commands save, kept for inspection (they are still written to disk)."""
    kept = []
    for module in (rnnkit.cli.viz, rnnkit.cli.viz_models):
        real = module.save_figure

        def keep(fig, path, real=real):
            kept.append(fig)
            return real(fig, path)

        monkeypatch.setattr(module, "save_figure", keep)
    return kept


def _row_labels(ax) -> list[int]:
    return [int(t.get_text()) for t in ax.get_yticklabels()]


def test_most_varying_units_are_those_with_the_largest_std():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(30, 50)) * rng.uniform(0.01, 2.0, size=50)  # (T, H), spreads differ
    expected = list(np.argsort(-states.std(axis=0), kind="stable")[:7])
    assert most_varying_units(states, 7) == expected
    assert most_varying_units(states, 99) == list(np.argsort(-states.std(axis=0), kind="stable"))


def test_chosen_units_and_their_labels():
    pattern = np.sin(np.arange(12.0))[:, None]  # (T, 1), the same shape for every unit
    states = pattern * np.linspace(0.1, 3.0, 40)[::-1]  # (T, H): unit 0 varies most, then 1, ...
    shown, how = choose_units(states, None, 5, "index")
    assert shown == [0, 1, 2, 3, 4] and "5 of 40 units that vary most" in how
    shown, how = choose_units(states, None, 5, "variation")
    assert shown == [4, 3, 2, 1, 0] and "most varying at the top" in how  # the bottom row is first
    assert choose_units(states, [17, 3], None, "index") == ([3, 17], "units 3, 17 (--units), rows by unit index")
    assert choose_units(states, "all", None, "index")[0] == list(range(40))
    fig = plot_hidden_states(states, units=[3, 17, 39])
    ax = fig.axes[0]
    assert _row_labels(ax) == [3, 17, 39]
    np.testing.assert_allclose(np.asarray(ax.get_images()[0].get_array()), states[:, [3, 17, 39]].T)


def test_charlm_heatmap_shows_the_32_most_varying_units_labelled(charlm_run, figures, tmp_path):
    text = "abc dead bead"
    assert main(["heatmap", "--run", str(charlm_run), "--text", text, "--out", str(tmp_path / "h.png")]) == 0
    (fig,) = figures
    ax = fig.axes[0]
    # the oracle: the top layer's states from the model's own torch.nn-compatible layer
    from rnnkit.train.checkpoint import load_model

    model, vocab, _ = load_model(charlm_run)
    ids = torch.as_tensor(vocab.encode(text))[:, None]  # (T, 1)
    with torch.no_grad():
        out, _ = model.rnn(model.embed(ids))  # (T, 1, H) top layer
    spread = out[:, 0].double().numpy().std(axis=0)  # (H,) over time
    top32 = sorted(np.argsort(-spread, kind="stable")[:32].tolist())
    assert _row_labels(ax) == top32  # every row labelled with its unit, by index
    np.testing.assert_allclose(np.asarray(ax.get_images()[0].get_array()), out[:, 0, top32].numpy().T, atol=1e-6)
    assert "32 of 40 units that vary most" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()][:4] == ["a", "b", "c", "␣"]


def test_heatmap_units_flag_and_a_linked_run_folder(adding_run, figures, tmp_path):
    latest = tmp_path / "latest"
    latest.symlink_to(adding_run, target_is_directory=True)
    assert main(["heatmap", "--run", str(latest), "--units", "5,1", "--out", str(tmp_path / "h.svg")]) == 0
    ax = figures[-1].axes[0]
    assert _row_labels(ax) == [1, 5]
    assert f"({adding_run.name})" in ax.get_title()  # the run's own name, not the link's
    assert main(["curves", str(latest)]) == 0 and (adding_run / "curves.png").is_file()
    assert main(["gradflow", "--run", str(latest), "--out", str(tmp_path / "g.png")]) == 0
    assert main(["diagram", "--run", str(latest), "--steps", "2"]) == 0


def test_curves_keep_losses_and_accuracies_apart(tmp_path, figures, capsys):
    run = tmp_path / "copy"
    assert main(["task", "copy", "--length", "3", "--num-symbols", "2", "--steps", "4", "--eval-every", "2",
                 "--hidden-size", "8", "--quiet", "--out-dir", str(run)]) == 0
    assert main(["curves", str(run)]) == 0
    axes = figures[-1].axes
    labels = [{ln.get_label() for ln in ax.get_lines()} for ax in axes]
    assert labels[0] == {"train_ce", "eval_ce", "baseline: memoryless (blanks, then a uniform guess), 0.5941"}
    assert labels[1] == {"recall_accuracy"}
    assert "cross-entropy" in axes[0].get_ylabel() and axes[1].get_ylabel() == "fraction correct"
    assert axes[1].get_ylim()[0] == 0 and axes[1].get_ylim()[1] >= 1


def test_curves_of_other_runs(tmp_path):
    # a char-LM table: the loss panel, a bpc panel, bookkeeping left out
    (tmp_path / "metrics.csv").write_text(
        "step,epoch,elapsed_s,lr,train_loss,val_loss,val_bpc,chars_per_s,grad_norm\n"
        "10,0,1,0.003,3.0,,,900,1.2\n20,0,2,0.003,2.5,2.6,3.75,950,1.1\n")
    axes = plot_curves(tmp_path).axes
    assert [{ln.get_label() for ln in ax.get_lines()} for ax in axes] == [{"train_loss", "val_loss"}, {"val_bpc"}]
    assert axes[1].get_ylabel() == "bits per character"
    # an old memory-task table: a bare baseline column goes with the metric, not the loss or accuracy
    (tmp_path / "metrics.csv").write_text(
        "step,train_loss,eval_ce,accuracy,baseline,seconds\n0,nan,2.3,0.1,0.52,0\n5,1.0,0.9,0.4,0.52,1\n")
    axes = plot_curves(tmp_path).axes
    names = [{ln.get_label() for ln in ax.get_lines()} for ax in axes]
    assert names == [{"train_loss"}, {"eval_ce", "baseline (ce) 0.52"}, {"accuracy"}]


def _inside(ax) -> bool:
    lo, hi = ax.get_ylim()
    return all(lo <= y <= hi for line in ax.get_lines() for y in line.get_ydata())


def test_no_gradient_line_leaves_its_axis():
    steep = torch.logspace(-15, -1, 50)  # falls by 10^14, as an untrained RNN's can
    fig = plot_gradient_norms({"steep": steep, "flat": torch.full((50,), 1e-3), "zero": torch.zeros(50)})
    (ax,) = fig.axes
    assert _inside(ax) and ax.get_ylim()[0] < 1e-15
    assert "0 drawn on the bottom edge" in ax.get_xlabel()
    assert "bottom edge" not in plot_gradient_norms({"steep": steep}).axes[0].get_xlabel()


def test_gradflow_command_lines_stay_on_their_axes(figures, tmp_path, capsys):
    assert main(["gradflow", "--length", "30", "--train-steps", "3", "--hidden-size", "8",
                 "--out", str(tmp_path / "g.png")]) == 0
    axes = figures[-1].axes
    assert len(axes) == 3 and all(_inside(ax) for ax in axes)
    assert len({ax.get_ylim() for ax in axes}) == 1  # one scale for the three cells
