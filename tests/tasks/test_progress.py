"""Long commands are never silent: log lines off a terminal, a tqdm bar on one, no 'nan'."""

import io

import pytest

from rnnkit.cli import main
from rnnkit.tasks.progress import StepProgress, format_seconds


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_log_lines_off_a_terminal():
    stream = io.StringIO()
    with StepProgress(5, "adding lstm", stream=stream, interval=3600) as bar:
        for step in range(1, 6):
            bar(step, 1.0 / step)
    lines = stream.getvalue().splitlines()
    assert [ln.split(" | ")[0] for ln in lines] == ["adding lstm: step 1/5", "adding lstm: step 5/5"]
    assert "loss 0.2000" in lines[1]

    stream = io.StringIO()
    with StepProgress(4, "x", stream=stream, interval=0) as bar:  # every step once the interval is 0
        for step in range(1, 5):
            bar(step, 0.5)
    assert len(stream.getvalue().splitlines()) == 4 and "left" in stream.getvalue().splitlines()[1]

    stream = io.StringIO()
    with StepProgress(3, "x", stream=stream, enabled=False) as bar:
        bar(1, 0.5)
    assert stream.getvalue() == ""


def test_a_bar_on_a_terminal():
    stream = Terminal()
    with StepProgress(3, "copy gru", stream=stream) as bar:
        for step in range(1, 4):
            bar(step, 0.25)
    text = stream.getvalue()
    assert "copy gru" in text and "3/3" in text and "loss 0.2500" in text and "\r" in text


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 75.4, 3725)] == ["0:00", "1:15", "1:02:05"]


def _stderr_lines(capsys):
    out, err = capsys.readouterr()
    assert "nan" not in out.lower() and "nan" not in err.lower()
    return out, err.splitlines()


def test_task_commands_print_progress_off_a_terminal(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["task", "adding", "--length", "6", "--steps", "3", "--eval-every", "2", "--hidden-size", "4",
                 "--out-dir", str(run)]) == 0
    out, err = _stderr_lines(capsys)
    assert [ln.split(" | ")[0] for ln in err] == ["adding lstm: step 1/3", "adding lstm: step 3/3"]
    assert "step      0  train      -  eval MSE" in out  # no training loss yet: a dash, not nan
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[:4] == ["step", "train_mse", "eval_mse", "baseline_mse"]
    assert rows[1].split(",")[1] == ""  # step 0: no training loss

    assert main(["task", "reverse", "--steps", "2", "--eval-every", "5", "--eval-size", "4",
                 "--hidden-size", "4", "--embed-size", "2"]) == 0
    _, err = _stderr_lines(capsys)
    assert [ln.split(" | ")[0] for ln in err] == ["reverse gru: step 1/2", "reverse gru: step 2/2"]

    assert main(["task", "copy", "--length", "2", "--num-symbols", "1", "--steps", "2", "--hidden-size", "4",
                 "--quiet"]) == 0
    out, err = _stderr_lines(capsys)
    assert err == [] and len(out.splitlines()) == 3  # --quiet: the header and the result only


@pytest.mark.parametrize("argv,bars", [
    (["gradflow", "--length", "4", "--train-steps", "2", "--hidden-size", "4"],
     ["training rnn", "training lstm", "training gru"]),
    (["heatmap", "--length", "4", "--train-steps", "2", "--hidden-size", "4"], ["training lstm"]),
])
def test_picture_commands_print_progress_while_training(argv, bars, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "p.png")]) == 0
    out, err = _stderr_lines(capsys)
    assert out.splitlines()[0].startswith(f"{argv[0]}: ")  # what it is about to do, said first
    assert [ln.split(" | ")[0] for ln in err] == [f"{b}: step {s}/2" for b in bars for s in (1, 2)]


def test_config_cells_match_the_models():
    from rnnkit.models.build import CELLS
    from rnnkit.tasks.configs import CELLS as CONFIG_CELLS

    assert CONFIG_CELLS == CELLS


@pytest.mark.skipif(not hasattr(__import__("os"), "openpty"), reason="needs a pseudo-terminal")
def test_a_terminal_without_a_width_gets_log_lines():
    """A pty of 0 columns (some containers and CI runners) would draw tqdm's bar as nothing."""
    import fcntl
    import os
    import struct
    import termios

    master, slave = os.openpty()
    with os.fdopen(slave, "w") as stream:
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
            assert StepProgress(3, "x", stream=stream)._bar is None
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            bar = StepProgress(3, "x", stream=stream)
            assert bar._bar is not None
            bar.close()
        finally:
            os.close(master)
