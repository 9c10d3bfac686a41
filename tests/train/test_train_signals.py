"""Ctrl-C and SIGTERM: save atomically, exit 130, resumable; a second Ctrl-C quits at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from lm_helpers import TINY

from rnnkit.cli import main
from rnnkit.train import signals as signals_module
from rnnkit.train.signals import StopSignals

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def start_training(corpus, out, *extra) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "rnnkit", "train", "--data", str(corpus), "--out", str(out),
            *TINY, "--max-iters", "1000000", "--eval-every", "1000000", *extra]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_steps(proc: subprocess.Popen, steps: int = 3) -> None:
    """Read stderr until the run has logged ``steps`` steps (the loop is running)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if line.startswith(f"step {steps}/"):
            return
    proc.kill()
    raise AssertionError("training did not start")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_and_exits_130_then_resumes(corpus, tmp_path, capsys, sig):
    out = tmp_path / "run"
    proc = start_training(corpus, out)
    wait_for_steps(proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert f"{signal.Signals(sig).name} received" in stderr
    assert f"rnnkit train --out {out} --resume" in stderr
    assert "Traceback" not in stderr
    saved = torch.load(out / "state.pt", weights_only=True)["step"]
    assert saved >= 3
    # the saved run continues where it stopped
    assert main(["train", "--out", str(out), "--resume", "--max-iters", str(saved + 2)]) == 0
    assert torch.load(out / "state.pt", weights_only=True)["step"] == saved + 2
    assert "validation loss" in capsys.readouterr().out


def test_second_ctrl_c_exits_at_once(corpus, tmp_path):
    out = tmp_path / "run"
    # a step of a second or more, so that both signals land inside the first one
    proc = start_training(corpus, out, "--hidden-size", "512", "--seq-len", "256",
                          "--batch-size", "16")
    wait_for_line(proc, "charlm:")  # printed just before the loop starts
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    wait_for_line(proc, "SIGINT received")  # the first one was handled: a save is pending
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in stderr and "continue with" not in stderr  # no waiting for the save
    assert not (out / "state.pt").exists() and not (out / "model.safetensors").exists()


def wait_for_line(proc: subprocess.Popen, start: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if line.startswith(start):
            return
    proc.kill()
    raise AssertionError(f"no line starting with {start!r}")


def test_stop_signals_in_process(monkeypatch):
    """First signal: a flag; second: os._exit(130), without waiting; handlers restored after."""
    exits = []
    monkeypatch.setattr(signals_module.os, "_exit", lambda code: exits.append(code))
    before = signal.getsignal(signal.SIGINT)
    messages = []
    with StopSignals(messages.append) as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and exits == [] and "SIGINT received" in messages[0]
        os.kill(os.getpid(), signal.SIGTERM)
        assert exits == [130]
    assert signal.getsignal(signal.SIGINT) is before
