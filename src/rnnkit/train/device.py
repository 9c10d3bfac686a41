"""Where training runs: the device a ``--device`` name means, and whether ``--precision`` runs there.

Both are checked before any work starts, so a machine that cannot do what was asked says so in one
line instead of failing inside the first training step.
"""

from __future__ import annotations

import torch

from rnnkit.train import distributed
from rnnkit.train.config import ConfigError


def resolve_device(name: str, info: distributed.DistInfo | None = None) -> torch.device:
    """``auto`` is the GPU when there is one, else the CPU; under torchrun ``cuda`` is the local rank's."""
    info = info or distributed.DistInfo()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = " (this torch is a CPU-only build)" if torch.version.cuda is None else ""
            raise ConfigError(
                f"--device {name}: no CUDA GPU is available{build}; use --device cpu"
            )
        index = info.local_rank if name == "cuda" else name.split(":", 1)[1]
        if not str(index).isdigit() or int(index) >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: expected cuda:N with N < "
                              f"{torch.cuda.device_count()} (the GPUs present)")
        return torch.device("cuda", int(index))
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("--device mps: the Apple GPU backend is not available; use --device cpu")
        return torch.device("mps")
    raise ConfigError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")


def check_precision(precision: str, cell: str, *, input_size: int, hidden_size: int,
                    num_layers: int, device: torch.device) -> None:
    """Refuse ``bf16`` where the recurrent layer has no bfloat16 kernel, before any work.

    The probe is the layer training will run (same cell, sizes and kernel, a (2, 1) input), forward
    and backward under bf16 autocast. Not every machine has one: oneDNN, torch's CPU kernel for an
    LSTM under bf16, has none on an AVX2 CPU (without AVX-512), where the first training step would
    fail with "could not create a primitive descriptor for the LSTM forward propagation primitive".
    """
    if precision != "bf16":
        return
    from rnnkit.models.build import make_rnn

    layer = make_rnn(cell, input_size, hidden_size, num_layers).to(device)
    x = torch.zeros(2, 1, input_size, device=device, requires_grad=True)  # (T, B, I)
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out, _ = layer(x)  # (T, B, H)
        out.float().sum().backward()
    except RuntimeError as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        reason = reason.split(". Run workload with")[0][:160]  # drop oneDNN's debugging advice
        where = device.type
        if device.type == "cpu":
            where += f", CPU capability {torch.backends.cpu.get_cpu_capability()}"
        raise ConfigError(
            f"--precision bf16: this machine has no bfloat16 {cell.upper()} kernel ({where}; "
            f"torch: {reason}); use --precision fp32 (bf16 pays only on GPUs and on CPUs with "
            "native bf16 arithmetic, AVX512_BF16 or AMX)"
        ) from None
