"""What every sequence layer shares: the input's layout, the initial state, one step at a time.

Used by the torch.nn-compatible layers (``rnnkit.nn.rnn``), the general recurrence
(``rnnkit.nn.recurrent``) and the Elman network (``rnnkit.nn.elman``), so that they take their
inputs, make their initial states and stream one step the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.nn._checks import check_input, check_state


def initial_state(
    init_state: str, training: bool, shape: tuple[int, ...], like: Tensor, learned: Tensor | None
) -> Tensor:
    """The state used when the caller gives none, of ``shape``: ``"zeros"``; ``"random"`` (fresh
    standard-normal noise on every call in training, zeros in eval); ``"learned"`` (the parameter
    ``learned``, broadcast to ``shape``). In ``like``'s dtype and device."""
    if init_state == "learned":
        return learned.expand(shape).to(like.dtype)
    if init_state == "random" and training:
        return torch.randn(shape, dtype=like.dtype, device=like.device)
    return torch.zeros(shape, dtype=like.dtype, device=like.device)


def check_h0(name: str, h0, batch: int, hidden_size: int, batched: bool, like: Tensor) -> Tensor:
    """A given h0 must be (B, H) for batched input, (H,) unbatched, in the input's dtype.
    Returns it batched."""
    check_state(name, h0, (batch, hidden_size) if batched else (hidden_size,), like, "h0")
    return h0 if batched else h0.unsqueeze(0)


def to_time_major(name: str, x, batch_first: bool) -> tuple[Tensor, bool]:
    """(T, I), (T, B, I) or batch-first (B, T, I) -> ((T, B, I), batched)."""
    check_input(name, x, {2: "(T, I)", 3: "(B, T, I)" if batch_first else "(T, B, I)"})
    if x.dim() == 2:
        return x.unsqueeze(1), False  # (T, 1, I)
    return (x.transpose(0, 1) if batch_first else x), True


def from_time_major(y: Tensor, h_n: Tensor, batched: bool, batch_first: bool):
    """Undo `to_time_major` on the outputs y (T, B, O) and h_n (B, H)."""
    if not batched:
        return y.squeeze(1), h_n.squeeze(0)
    return (y.transpose(0, 1) if batch_first else y), h_n


#: the fast path's cell for each stock mode (rnnkit.nn.fast.registry.KERNELS)
FAST_CELLS = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}


def step_once(module: nn.Module, x_t, h):
    """One time step through ``module.forward``: x_t (B, I) or (I,) -> (y_t, new state).

    The state is what ``forward`` takes and returns; carry it from call to call. A layer of
    ``rnnkit.nn.rnn`` that streams without autograd may take another path than its ``forward``
    would for the same one-step input (`step_path`); the numbers are the same.
    """
    check_input(f"{type(module).__name__}.step", x_t, {1: "(I,)", 2: "(B, I)"})
    path = step_path(module, x_t)
    if path is not None:
        return _step_layers(module, x_t, h, path)
    time_dim = 1 if (module.batch_first and x_t.dim() == 2) else 0
    y, h = module(x_t.unsqueeze(time_dim), h)
    return y.squeeze(time_dim), h


def step_path(module: nn.Module, x_t: Tensor) -> str | None:
    """The path for one step of an ``rnnkit.nn.rnn`` layer, where it differs from ``forward``'s.

    Only the stock LSTM leaves its forward for one step without autograd (``torch.no_grad``,
    inference mode, or nothing requiring grad) on CPU: oneDNN's LSTM, which its forward runs,
    reorders the weights at every call (milliseconds, against a few matrix-vector products). It
    takes the compiled kernel where the kernels are built already (a step never starts a build),
    else the readable loop. torch's GRU and RNN kernels repack nothing, and one step on them is
    faster than on the compiled kernel (``benchmarks/step.py``), so those keep their forward.
    None: take ``forward``.
    """
    from rnnkit.nn.paths import COMPILED, LOOP, NATIVE, choose_path, compiled_applies

    run_layers = getattr(module, "_run_layers", None)
    if run_layers is None or x_t.device.type != "cpu" or getattr(module, "proj_size", 0):
        return None
    if type(x_t) is not Tensor or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return None  # traced for export or torch.compile: the layer's own (traceable) path
    if torch.is_grad_enabled() and (x_t.requires_grad or any(
            p.requires_grad for p in module.parameters())):
        return None
    compiled = getattr(module, "compiled", None)  # the Fused* layers' own choice
    if module.mode != "LSTM" or choose_path(module.backend, x_t, native=module._has_native,
                                            fast_cell=module.fast_cell,
                                            compiled=compiled) != NATIVE:
        return None  # forward's own path: torch's GRU/RNN kernel, or the fast or readable one
    # a build (minutes) is not worth one step: the kernels are taken when they load at once
    return COMPILED if compiled_applies("lstm", x_t, compiled, build=False) else LOOP


def _step_layers(module, x_t: Tensor, h, path: str):
    """``forward`` on a one-step input, for the paths of `step_path`: the same checks,
    state handling and outputs, run by ``module._run_layers`` on ``path``."""
    from rnnkit.nn._checks import check_features

    name = type(module).__name__
    batched = x_t.dim() == 2
    x = x_t.unsqueeze(0) if batched else x_t.view(1, 1, -1)  # (1, B, I)
    check_features(name, x, module.input_size, module.weight_ih_l0)
    hx = module._prepare_hx(h, x.size(1), batched, x)
    out, h_n = module._run_layers(x, hx, None, path)  # (1, B, H_out), (L, B, ·) each
    y = out[0] if batched else out[0, 0]
    if not batched:
        h_n = tuple(s.squeeze(1) for s in h_n)
    return y, (h_n if module.mode == "LSTM" else h_n[0])
