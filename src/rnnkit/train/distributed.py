"""Data-parallel training under ``torchrun``: process group setup and the few collectives we need.

``torchrun --nproc_per_node N -m rnnkit train ...`` starts N copies with RANK, LOCAL_RANK and
WORLD_SIZE set. Each copy owns batch_size / N of the streams; DistributedDataParallel averages the
gradients, so with equal shares the update is the one a single process makes on the whole batch.
Rank 0 alone logs and writes the run folder. Backend: gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def from_environment() -> DistInfo:
    """What torchrun set; a plain ``python`` run is a world of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world)


def init(info: DistInfo, device: torch.device) -> None:
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=info.rank, world_size=info.world_size)


def shutdown(info: DistInfo) -> None:
    """Leave together: rank 0 may still be scoring the validation split when the others finish,
    and a process that tears its group down while a peer still holds the connections can abort
    (seen with gloo: "terminate called without an active exception", exit -6)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def sum_across(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Element-wise sum over all processes (the values themselves in a single process)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_streams(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """(L, B / N, H) per process -> (L, B, H) everywhere, in stream order (rank 0's streams first)."""
    if not info.enabled:
        return t
    parts = [torch.empty_like(t) for _ in range(info.world_size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=1)


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's flag, on every process."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())
