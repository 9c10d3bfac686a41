"""``rnnkit info``: versions, the CPU and its features, threads and devices, for bug reports and CI logs.

The CPU lines say which kernels this machine gets: torch picks its vectorised kernels by CPU
capability (AVX2, AVX512), and oneDNN (torch's CPU kernel for the LSTM, and for bf16 work) by its
own ISA; bf16 pays only with native bf16 arithmetic (avx512_bf16, AMX).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
import tempfile

# the CPU features that decide rnnkit's speed and what --precision bf16 can do
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_model_and_flags() -> tuple[str, set[str]]:
    """The CPU's name and feature flags (Linux: /proc/cpuinfo; elsewhere the name only)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return platform.processor() or platform.machine() or "unknown", set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware") and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model or platform.machine() or "unknown", flags


def _onednn_verbose_lines(run) -> str:
    """What oneDNN prints to stdout (file descriptor 1) while ``run()`` executes with verbose on."""
    import torch

    saved = os.dup(1)
    with tempfile.TemporaryFile() as capture:
        sys.stdout.flush()
        os.dup2(capture.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                run()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        return capture.read().decode("utf-8", errors="replace")


def _tiny_lstm() -> None:
    import torch

    with torch.no_grad():
        torch.nn.LSTM(4, 4)(torch.zeros(2, 1, 4))


@functools.lru_cache(maxsize=1)
def onednn_isa() -> str:
    """The instruction set oneDNN uses here, from its verbose header ("Intel AVX2", ...).

    oneDNN prints the header once per process, so when this process already printed it, a fresh
    interpreter is asked instead (about a second: it imports torch).
    """
    import torch

    if not torch.backends.mkldnn.is_available():
        return "not built into this torch"
    for text in (_onednn_verbose_lines(_tiny_lstm), _onednn_in_subprocess()):
        for line in text.splitlines():
            if ",cpu,isa:" in line:
                return line.split(",cpu,isa:", 1)[1].strip()
    return "unknown"


def _onednn_in_subprocess() -> str:
    code = ("import torch\nwith torch.no_grad(): torch.nn.LSTM(4, 4)(torch.zeros(2, 1, 4))")
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    try:
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def environment_info() -> dict[str, str]:
    import numpy
    import torch

    import rnnkit

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    model, flags = cpu_model_and_flags()
    return {
        "rnnkit": rnnkit.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cpu": f"{model} ({os.cpu_count()} logical cores)",
        "cpu flags": ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in FLAGS)
        if flags else "unknown on this platform",
        "torch cpu capability": torch.backends.cpu.get_cpu_capability(),
        "oneDNN isa": onednn_isa(),
        "torch threads": str(torch.get_num_threads()),
        "interop threads": str(torch.get_num_interop_threads()),
        "devices": ", ".join(devices),
    }


def run(args) -> int:
    for key, value in environment_info().items():
        print(f"{key:>20}: {value}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("info", help="print versions, the CPU and its features, threads and devices")
    p.set_defaults(func=run)
