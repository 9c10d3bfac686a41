"""``rnnkit info``: versions, threads and devices, for bug reports and benchmark headers."""

from __future__ import annotations

import platform


def environment_info() -> dict[str, str]:
    import numpy
    import torch

    import rnnkit

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return {
        "rnnkit": rnnkit.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch threads": str(torch.get_num_threads()),
        "interop threads": str(torch.get_num_interop_threads()),
        "devices": ", ".join(devices),
    }


def run(args) -> int:
    for key, value in environment_info().items():
        print(f"{key:>16}: {value}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("info", help="print versions, thread count and available devices")
    p.set_defaults(func=run)
