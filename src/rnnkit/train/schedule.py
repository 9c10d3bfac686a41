"""The learning-rate schedule: linear warm-up, then cosine decay to a floor (Loshchilov & Hutter 2017).

    lr(s) = lr_max (s + 1) / W                                          s < W (warm-up steps)
    lr(s) = lr_min + (lr_max - lr_min) (1 + cos(pi p)) / 2              after, p in [0, 1]
    p = max((s - W) / (D - W),  elapsed / max_time)                     D = decay steps

The second term of p ties the decay to the clock when training has a time budget: a run stopped by
``max_time`` has then decayed fully whatever the machine's speed. Without one the schedule is a pure
function of the step, which exact resumption relies on.
"""

from __future__ import annotations

import math


def learning_rate(step: int, *, lr: float, warmup_iters: int, decay_iters: int,
                  min_lr_ratio: float = 0.1, elapsed: float = 0.0, max_time: float = 0.0) -> float:
    if step < warmup_iters:
        return lr * (step + 1) / warmup_iters
    progress = (step - warmup_iters) / max(1, decay_iters - warmup_iters)
    if max_time > 0:
        progress = max(progress, elapsed / max_time)
    progress = min(1.0, max(0.0, progress))
    floor = lr * min_lr_ratio
    return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
