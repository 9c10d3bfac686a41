"""Shared helpers for the rnnkit.scratch tests: the torch oracle and a relative error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare.txt"

IMPLS = ("torch.nn", "rnnkit.nn")


def make_torch_rnn(kind: str, impl: str, input_size: int, hidden_size: int, **kw):
    """The oracle module: torch.nn's, or rnnkit.nn's readable loop (the one switch between them)."""
    if impl == "torch.nn":
        mod, extra = torch.nn, {}
    else:
        import rnnkit.nn as mod

        extra = {"backend": "loop"}  # the python time loop, a second implementation to agree with
    cls = {"rnn": mod.RNN, "lstm": mod.LSTM, "gru": mod.GRU}[kind]
    return cls(input_size, hidden_size, **kw, **extra)


def rel_err(a, b) -> float:
    """max |a - b| / max |b|: the error relative to the scale of the reference array."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = np.abs(b).max() if b.size else 0.0
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(a - b).max())


def torch_forward_backward(module, x, hx, d_out, d_hn, lstm: bool):
    """Run a torch module and backpropagate loss = <out, d_out> + <h_n, d_hn> (+ <c_n, d_cn>).

    Returns (out, h_n, d_x, d_hx, grads) as numpy arrays, grads keyed by parameter name.
    """
    dt = next(module.parameters()).dtype
    tx = torch.tensor(x, dtype=dt, requires_grad=True)
    if lstm:
        th = tuple(torch.tensor(s, dtype=dt, requires_grad=True) for s in hx)
    else:
        th = torch.tensor(hx, dtype=dt, requires_grad=True)
    out, hn = module(tx, th)
    loss = (out * torch.tensor(d_out, dtype=dt)).sum()
    if lstm:
        loss = loss + (hn[0] * torch.tensor(d_hn[0], dtype=dt)).sum()
        loss = loss + (hn[1] * torch.tensor(d_hn[1], dtype=dt)).sum()
    else:
        loss = loss + (hn * torch.tensor(d_hn, dtype=dt)).sum()
    loss.backward()
    grads = {n: p.grad.numpy() for n, p in module.named_parameters()}
    if lstm:
        return (out.detach().numpy(), tuple(h.detach().numpy() for h in hn), tx.grad.numpy(),
                tuple(h.grad.numpy() for h in th), grads)
    return out.detach().numpy(), hn.detach().numpy(), tx.grad.numpy(), th.grad.numpy(), grads


def to_torch_state(model) -> dict:
    return {k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()}
