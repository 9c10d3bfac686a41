"""torchrun with 2 CPU processes (gloo) trains the weights one process trains on the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from lm_helpers import TINY
from safetensors.torch import load_file

from rnnkit.cli import main

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or sys.platform == "win32",
    reason="needs torch.distributed with gloo",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(corpus, tmp_path, capsys):
    """The same 6 AdamW steps, one process against two, in float64.

    The two runs differ only in the order float additions happen (each process averages its 2 of
    the 4 streams, then DDP averages the two), so their weights differ by rounding. In float32 that
    rounding, amplified through 6 Adam steps (Adam divides by the gradient's own scale, so a small
    gradient's rounding error moves a weight as much as a large one's), reached 2.2e-6 on an AVX2
    machine: more than the step size of float32 itself there, about 36 units in the last place of
    the weights. The same amplification in float64 (unit roundoff 1.1e-16) stays near 1e-14, so
    1e-10 leaves a margin of 10^4 and still catches any real difference: a stream read by the wrong
    process or a gradient not averaged moves the weights by 1e-4 or more.
    """
    flags = [*TINY, "--max-iters", "6", "--eval-every", "3", "--warmup-iters", "2", "--lr", "0.01",
             "--sample-length", "10", "--precision", "fp64"]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert main(["train", "--data", str(corpus), "--out", str(single), *flags]) == 0
    capsys.readouterr()

    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    argv = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
            "-m", "rnnkit", "train", "--data", str(corpus), "--out", str(ddp), *flags]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("validation loss") == 1  # rank 0 alone reports
    assert "x2 processes" in proc.stderr

    a, b = load_file(single / "model.safetensors"), load_file(ddp / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == torch.float64
        assert not torch.equal(a[key], torch.zeros_like(a[key]))
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-10)
    # the checkpoint holds the carried state of all 4 streams, gathered from both processes
    sa = torch.load(single / "state.pt", weights_only=True)
    sb = torch.load(ddp / "state.pt", weights_only=True)
    for x, y in zip(sa["carried"], sb["carried"]):
        assert y.shape == (1, 4, 16)
        torch.testing.assert_close(y, x, rtol=0, atol=1e-10)
