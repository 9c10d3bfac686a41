"""``rnnkit.cli.main`` called from Python leaves the caller's process as it found it."""

import torch

from rnnkit.cli import main


def test_threads_flag_does_not_outlive_the_command(tmp_path, capsys):
    """``--threads`` pins torch's thread count for the command only (tasks and viz pin it to 1
    by default); the caller's count is back when main returns."""
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    torch.set_num_threads(want)
    try:
        assert main(["task", "adding", "--length", "4", "--steps", "1", "--hidden-size", "4",
                     "--threads", str(3 - want), "--quiet", "--out-dir", str(tmp_path / "run")]) == 0
        assert torch.get_num_threads() == want
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()
