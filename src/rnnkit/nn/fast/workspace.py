"""The buffer pool: buffers of finished calls, handed to the next call of the same shape (CPU).

Why: a (T, B, 4H) buffer is megabytes. The C allocator gets it from the OS and gives it back at
every call, so each call pays a page fault per 4 KB page on first touch, a large share of a small
layer's forward (``benchmarks/custom_cells.py`` times the same layer with the pool off, in the
"no workspace reuse" row). Keeping a finished call's buffers for the next removes that.

Safety: a buffer comes back only when the kernel that took it is garbage (after its backward, or
at once under ``no_grad``), so nothing in use is ever handed out twice. One lock guards the lists
and the byte count, so layers may run in several threads at once. GPU tensors are not kept:
PyTorch's CUDA allocator already caches.

Which pool a call uses is a scoped choice (`rnnkit.options`): ``workspace=True`` (default)
the shared pool below, ``False`` fresh buffers every call, or a `Workspace` of one's own.
"""

from __future__ import annotations

import threading

from torch import Tensor

from rnnkit.options import current


class Workspace:
    """A pool holding at most ``limit_bytes`` of buffers; ``clear()`` frees them."""

    def __init__(self, limit_bytes: int = 512 << 20) -> None:
        self.limit_bytes = limit_bytes
        self.free: dict[tuple, list[Tensor]] = {}
        self.held = 0
        self.lock = threading.Lock()

    def take(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """A kept buffer of this shape, dtype and device, or a new one."""
        key = (tuple(shape), like.dtype, like.device)
        if self.limit_bytes > 0:  # a limit of 0 hands out nothing, not even what it still holds
            with self.lock:
                kept = self.free.get(key)
                if kept:
                    t = kept.pop()
                    self.held -= t.nbytes
                    return t
        return like.new_empty(shape)

    def give(self, tensors: list[Tensor]) -> None:
        """Keep these buffers for later calls, as far as the limit allows."""
        with self.lock:
            for t in tensors:
                if t.device.type != "cpu" or self.held + t.nbytes > self.limit_bytes:
                    continue
                self.free.setdefault((tuple(t.shape), t.dtype, t.device), []).append(t)
                self.held += t.nbytes

    def clear(self) -> None:
        with self.lock:
            self.free, self.held = {}, 0


#: the pool every call shares unless the scope says otherwise
SHARED_POOL = Workspace()


def current_pool() -> Workspace | None:
    """The pool the calling scope chose, or None for fresh buffers (``workspace=False``)."""
    choice = current().workspace
    if choice is True:
        return SHARED_POOL
    return None if choice is False else choice


class Owner:
    """Base of the kernels: takes buffers from the scope's pool, gives them back when garbage."""

    owned: list[Tensor]
    pool: Workspace | None

    def take(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        if not hasattr(self, "owned"):
            self.owned, self.pool = [], current_pool()
        t = like.new_empty(shape) if self.pool is None else self.pool.take(shape, like)
        self.owned.append(t)
        return t

    def __del__(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None and self.owned:
            pool.give(self.owned)
