"""Training on the memory tasks, and the ``rnnkit task`` command."""

import json

import pytest

from rnnkit.cli import main
from rnnkit.tasks.adding import BASELINE_MSE
from rnnkit.tasks.copying import copy_baseline
from rnnkit.tasks.memory import MemoryTaskConfig, baseline_for, train_memory_task


def test_lstm_learns_a_short_adding_problem():
    config = MemoryTaskConfig(task="adding", cell="lstm", length=8, hidden_size=16, steps=250, lr=1e-2,
                              eval_every=50)
    _, result = train_memory_task(config)
    assert result.history[0]["metric"] > BASELINE_MSE  # untrained: worse than predicting 1.0
    assert result.metric < 0.25 * BASELINE_MSE  # trained: well below it
    assert result.solved == (result.metric < 0.1 * BASELINE_MSE)
    assert [row["step"] for row in result.history] == [0, 50, 100, 150, 200, 250]


def test_copy_run_reports_recall_accuracy():
    config = MemoryTaskConfig(task="copy", cell="gru", length=3, num_symbols=2, hidden_size=8, steps=5,
                              eval_every=5, eval_size=16)
    _, result = train_memory_task(config)
    assert result.baseline == baseline_for(config) == pytest.approx(copy_baseline(3, 2))
    assert 0.0 <= result.accuracy <= 1.0


def test_config_errors_say_expected_and_got():
    with pytest.raises(ValueError, match="cell must be one of rnn, lstm, gru; got 'tcn'"):
        MemoryTaskConfig(cell="tcn")
    with pytest.raises(ValueError, match="length must be at least 2, got 1"):
        MemoryTaskConfig(task="adding", length=1)


def test_cli_task_commands(tmp_path, capsys):
    assert main(["task", "copy", "--length", "4", "--num-symbols", "2", "--steps", "4", "--eval-every", "2",
                 "--hidden-size", "8", "--out-dir", str(tmp_path / "copy")]) == 0
    out = capsys.readouterr().out
    assert "cross-entropy/step" in out and "vs baseline 0.5199" in out and "recalled symbols correct" in out
    cfg = json.loads((tmp_path / "copy" / "config.json").read_text())
    assert cfg["task"] == "copy" and cfg["num_symbols"] == 2 and cfg["kind"] == "memory_task"
    header = (tmp_path / "copy" / "metrics.csv").read_text().splitlines()[0]
    assert header.split(",")[:4] == ["step", "train_ce", "eval_ce", "recall_accuracy"]

    assert main(["task", "reverse", "--steps", "3", "--eval-every", "3", "--eval-size", "8",
                 "--hidden-size", "8", "--show", "123"]) == 0
    assert "  123 -> " in capsys.readouterr().out

    assert main(["task", "adding", "--cell", "tcn"]) == 2
    assert "cell must be one of rnn, lstm, gru; got 'tcn'" in capsys.readouterr().err
    assert main(["task", "sort", "--min-len", "5", "--max-len", "2"]) == 2
