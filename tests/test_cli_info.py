"""``rnnkit --version`` and ``rnnkit info`` through main() and as an installed console script."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch

import rnnkit
from rnnkit.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"rnnkit {rnnkit.__version__}"


def test_info_prints_versions_threads_devices(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"torch: {torch.__version__}" in out
    assert f"torch threads: {torch.get_num_threads()}" in out
    assert "devices: cpu" in out


def test_console_script_runs():
    exe = shutil.which("rnnkit") or str(__import__("pathlib").Path(sys.executable).with_name("rnnkit"))
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and rnnkit.__version__ in result.stdout


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err



def test_closed_pipe_ends_quietly(monkeypatch):
    """`rnnkit diagram | head -1`: the reader is gone, so the command stops with 141, no traceback."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away before anything was written
    stream = os.fdopen(write_end, "w", buffering=1)
    monkeypatch.setattr(sys, "stdout", stream)
    assert main(["diagram", "--steps", "2"]) == 141
    stream.close()  # its fd now points at devnull, so closing flushes nowhere and succeeds
