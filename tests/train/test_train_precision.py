"""``--precision``: bf16 trains where the machine has a bf16 kernel and is refused in one line where
it has none (an AVX2 CPU: oneDNN has no bf16 LSTM there); fp64 keeps every number in float64."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys

import pytest
import torch
from lm_helpers import TINY
from safetensors.torch import load_file

from rnnkit.cli import main
from rnnkit.train import ConfigError, check_precision

# what an AVX2-only machine (an AMD EPYC without AVX-512, as in CI) gives torch and oneDNN
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def bf16_refusal() -> str | None:
    try:
        check_precision("bf16", "lstm", input_size=8, hidden_size=16, num_layers=1,
                        device=torch.device("cpu"))
    except ConfigError as err:
        return str(err)
    return None


def torch_nn_runs_a_bf16_lstm(env: dict) -> bool:
    """The oracle: does torch.nn.LSTM itself run forward and backward under bf16 autocast?"""
    code = ("import torch\n"
            "x = torch.zeros(2, 1, 8, requires_grad=True)\n"
            "with torch.autocast('cpu', dtype=torch.bfloat16):\n"
            "    out, _ = torch.nn.LSTM(8, 32)(x)\n"
            "out.float().sum().backward()\n")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          timeout=300).returncode == 0


@pytest.mark.skipif(bf16_refusal() is not None, reason=f"this CPU has no bf16 LSTM: {bf16_refusal()}")
def test_bf16_autocast_trains_with_a_float32_loss(corpus, tmp_path):
    out = tmp_path / "bf16"
    assert main(["train", "--data", str(corpus), "--out", str(out), *TINY, "--max-iters", "3",
                 "--precision", "bf16"]) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert all(math.isfinite(float(r["train_loss"])) for r in rows if r["train_loss"])
    assert load_file(out / "model.safetensors")["head.weight"].dtype == torch.float32


def test_bf16_on_an_avx2_cpu_is_refused_in_one_line_before_any_work(corpus, tmp_path):
    """The issue's command under the AVX2 settings: one line, exit 2, no run folder; or, where
    torch.nn's own LSTM does run in bf16 under those settings, a normal run."""
    env = dict(os.environ, **AVX2)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "rnnkit", "train", "--data", str(corpus), "--out", str(out),
            *TINY, "--precision", "bf16", "--max-iters", "3", "--hidden-size", "32"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    if torch_nn_runs_a_bf16_lstm(env):
        assert proc.returncode == 0, proc.stderr[-2000:]
        return
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("rnnkit train: error: --precision bf16: this machine has no "
                               "bfloat16 LSTM kernel (cpu, CPU capability AVX2")
    assert "use --precision fp32" in lines[0] and "Run workload with" not in lines[0]
    assert not out.exists()  # refused before the run folder was made


def test_gru_has_a_bf16_kernel_where_the_lstm_has_none():
    """The probe asks the cell that will train: torch's CPU GRU is not oneDNN's, so bf16 runs."""
    check_precision("bf16", "gru", input_size=8, hidden_size=16, num_layers=2,
                    device=torch.device("cpu"))  # raises if it cannot run
    check_precision("fp32", "lstm", input_size=8, hidden_size=16, num_layers=1,
                    device=torch.device("cpu"))  # fp32 is not probed


def test_fp64_keeps_weights_and_state_in_float64_and_resumes(corpus, tmp_path, capsys):
    out = tmp_path / "fp64"
    argv = ["train", "--data", str(corpus), "--out", str(out), *TINY, "--precision", "fp64"]
    assert main([*argv, "--max-iters", "2"]) == 0
    assert load_file(out / "model.safetensors")["rnn.weight_hh_l0"].dtype == torch.float64
    state = torch.load(out / "state.pt", weights_only=True)
    assert all(s.dtype == torch.float64 for s in state["carried"])
    assert main(["train", "--out", str(out), "--resume", "--max-iters", "4"]) == 0
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 4
    assert main(["sample", str(out), "--length", "5", "--seed", "0"]) == 0  # loads into float32
