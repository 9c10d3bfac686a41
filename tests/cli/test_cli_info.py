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


def test_info_shows_the_cpu_and_the_kernels_it_gets(capsys):
    """The CPU's name, its AVX/bf16/AMX flags (oracle: /proc/cpuinfo), torch's CPU capability
    (oracle: torch.backends.cpu) and oneDNN's instruction set."""
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"torch cpu capability: {torch.backends.cpu.get_cpu_capability()}" in out
    assert "oneDNN isa: " in out and "oneDNN isa: unknown" not in out
    assert "cpu: " in out and "logical cores" in out
    if sys.platform == "linux":
        flags = set()
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
        if flags:
            for name in ("avx2", "avx512f", "avx512_bf16", "amx_bf16"):
                assert f"{name} {'yes' if name in flags else 'no'}" in out


def test_info_under_avx2_settings_names_them():
    """What CI logs on an AVX2 machine: the capability and ISA that explain a bf16 refusal."""
    env = dict(__import__("os").environ, ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    proc = subprocess.run([sys.executable, "-m", "rnnkit", "info"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "torch cpu capability: AVX2" in proc.stdout
    assert "oneDNN isa: Intel AVX2" in proc.stdout  # not more than the limit it was given


def test_top_help_promises_only_commands_that_exist(capsys):
    main([])
    text = capsys.readouterr().out
    description = text.split("positional arguments")[0]
    assert "benchmark" not in description
    import re

    listed = set(re.findall(r"^    (\w+)\s", text, flags=re.M))
    assert {"train", "sample", "eval", "runs", "info", "task", "diagram", "curves"} <= listed


def test_train_help_states_the_default_budget(capsys):
    from rnnkit.train import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.replace("-\n", "-").split())  # argparse wraps at "-"
    assert TrainConfig().max_time == 150
    assert "at most 150 s of training, about 2 minutes for the whole command" in text
    assert "--max-time 0 makes a run step-based" in text
