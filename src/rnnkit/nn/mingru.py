"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): recurrences that scan in parallel.

The gates depend on the input only, never on ``h_{t-1}``, so the recurrence is linear in h:
``h_t = a_t ⊙ h_{t-1} + b_t`` with ``a_t ∈ (0, 1)`` and ``b_t > 0`` known for all t at once:

    minGRU:   z = σ(W_z x + b_z),  h̃ = g(W_h x + b_h)          a = 1 - z,       b = z ⊙ h̃
    minLSTM:  f = σ(W_f x + b_f),  i = σ(W_i x + b_i),  h̃ = g(W_h x + b_h)
              a = f / (f + i),  b = i / (f + i) ⊙ h̃

with ``g(v) = v + 0.5`` for v ≥ 0 and ``σ(v)`` for v < 0 (continuous and positive; the paper's
``g``, `positive_activation` here, as ``g`` already names the LSTM's gate). The
coefficients are computed in log space (``log σ(k) = -softplus(-k)``, ``log f/(f+i) =
-softplus(softplus(-k_f) - softplus(-k_i))``), which stays exact for any gate logit.

Such a recurrence is a prefix scan (`linear_scan`); two parallel scans are implemented,
chosen by the ``scan=`` argument:

* ``"blocked"`` (default): a two-level blocked scan. Time is cut into ``n`` chunks of ``C ≈ √T``
  steps; one loop over the C positions runs every chunk at once (from a zero state), one loop over
  the n chunks carries the states between chunks, and one elementwise pass adds each carry,
  decayed by the running product of ``a`` within its chunk. That is ``2C + n`` large tensor ops
  instead of T small ones. Nothing is divided and every term is positive, so it is as accurate
  as the sequential loop. Its backward (``_BlockedScan``) is the same scan run backwards in time:
  ``δ_t = dL/dh_t + a_{t+1} δ_{t+1}``, ``db_t = δ_t``, ``da_t = δ_t h_{t-1}``.
* ``"log"``: the paper's log-space scan (Heinsen 2023),
  ``log h_t = A_t + logcumsumexp_s(log b_s - A_s)``, ``A_t = Σ_{r≤t} log a_r``, with autograd for
  the backward. It loses about ``eps · |A_t|`` relative accuracy and ``|A_t|`` grows with t, so
  it runs in chunks of ``CHUNK`` steps (the chunk-to-chunk carries are a recursive scan of the same
  form), which bounds the error by one chunk's. Kept as the paper's reference; on CPU it is far
  slower than the blocked scan (``torch.logcumsumexp`` is not vectorised there).

Layers are stacked as torch.nn.GRU stacks them: layer k's output is layer k+1's input.
Parameters per layer: ``weight_ih_l{k}`` (2H or 3H, I_k) and ``bias_ih_l{k}`` (rows z, h̃ for
minGRU; f, i, h̃ for minLSTM), initialised as ``nn.Linear`` (U(-1/√I_k, 1/√I_k)).

Shapes: T time, B batch, I input, H hidden, L layers. x (T, B, I) or (B, T, I) with
``batch_first`` or unbatched (T, I); h0 (L, B, H) or (L, H), zeros when omitted, any sign;
output (T, B, H); h_n (L, B, H). For T > 1 ``forward`` scans; for T = 1 it takes one step, so
stepping one step at a time while carrying ``h_n`` gives the numbers of one call on the whole
sequence (to rounding). `forward_sequential` is the plain loop (`rnnkit.nn.loop.scan`),
the reference. `compile_min_rnn` compiles the coefficients with ``torch.compile`` (opt-in).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from rnnkit.nn import loop
from rnnkit.nn._checks import (
    check_bool,
    check_choice,
    check_features,
    check_input,
    check_positive_int,
    check_state,
)
from rnnkit.nn.interop import TorchInterop, allow_weights_only_load
from rnnkit.nn.paths import LOOP, SCAN, traced_path
from rnnkit.nn.tracing import tracing

#: steps per chunk of the log-space scan (see the module docstring)
CHUNK = 64
SCANS = ("blocked", "log")


def log_positive_activation(v: Tensor) -> Tensor:
    """``log g(v)``: ``log(v + 0.5)`` for v ≥ 0, ``log σ(v) = -softplus(-v)`` for v < 0."""
    return torch.where(v >= 0, torch.log(F.relu(v) + 0.5), -F.softplus(-v))


def positive_activation(v: Tensor) -> Tensor:
    """The paper's ``g``: ``v + 0.5`` for v ≥ 0, ``σ(v)`` for v < 0 (continuous, positive,
    linear growth), so that every candidate state is positive and the log-space scan applies."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


# --------------------------------------------------------------------------------------------------
# The blocked scan
# --------------------------------------------------------------------------------------------------


def blocked_scan(a: Tensor, b: Tensor, reverse: bool = False) -> Tensor:
    """``h_t = a_t h_{t-1} + b_t`` from ``h = 0``, over axis 0 (from the end if ``reverse``).

    a, b (T, ...) -> h (T, ...). No autograd: see `_BlockedScan`.
    """
    T = a.shape[0]
    if reverse:  # the same loops on the time-reversed problem
        a, b = a.flip(0), b.flip(0)
    C = max(1, math.isqrt(T - 1) + 1) if T > 1 else 1  # C = ceil(√T): 2C + n ops, n ≈ C
    n = -(-T // C)
    pad = n * C - T
    if pad:  # a = 1, b = 0 past the end leave the real steps unchanged
        a = torch.cat([a, a.new_ones(pad, *a.shape[1:])])
        b = torch.cat([b, b.new_zeros(pad, *b.shape[1:])])
    rest = a.shape[1:]
    a, b = a.reshape(n, C, *rest), b.reshape(n, C, *rest)
    h = torch.empty_like(b)  # (n, C, ...): the scan inside each chunk, from a zero state
    P = torch.empty_like(a)  # (n, C, ...): Π a since the chunk's start
    h[:, 0], P[:, 0] = b[:, 0], a[:, 0]
    for j in range(1, C):  # every chunk at once
        torch.addcmul(b[:, j], a[:, j], h[:, j - 1], out=h[:, j])
        torch.mul(a[:, j], P[:, j - 1], out=P[:, j])
    carry = torch.zeros_like(h[:, 0])  # (n, ...): the state entering each chunk
    for k in range(1, n):
        torch.addcmul(h[k - 1, -1], P[k - 1, -1], carry[k - 1], out=carry[k])
    h.addcmul_(P, carry.unsqueeze(1))
    h = h.reshape(n * C, *rest)[:T]
    return h.flip(0) if reverse else h


class _BlockedScan(torch.autograd.Function):
    """h = linear_scan(a, b, h0): ``h_t = a_t h_{t-1} + b_t``, ``h_{-1} = h0``; backward: a reverse scan."""

    @staticmethod
    def forward(ctx, a, b, h0):
        if h0 is not None:  # fold the initial state into the first step: b_0 + a_0 h0
            b = torch.cat([torch.addcmul(b[:1], a[:1], h0.unsqueeze(0)), b[1:]])
        h = blocked_scan(a, b)
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, dh):
        a, h, h0 = ctx.saved_tensors
        # δ_t = dh_t + a_{t+1} δ_{t+1}: the same scan backwards in time, with a shifted by one
        a_next = torch.cat([a[1:], a.new_zeros(1, *a.shape[1:])])
        delta = blocked_scan(a_next, dh.contiguous(), reverse=True)  # (T, ...)
        h_prev = torch.cat([(h0 if h0 is not None else torch.zeros_like(h[0])).unsqueeze(0), h[:-1]])
        da = delta * h_prev
        dh0 = a[0] * delta[0] if h0 is not None and ctx.needs_input_grad[2] else None
        return da, delta, dh0


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """``h_t = a_t h_{t-1} + b_t`` for all t by the blocked scan. a, b (T, B, H), h0 (B, H)."""
    return _BlockedScan.apply(a.contiguous(), b.contiguous(), h0)


# --------------------------------------------------------------------------------------------------
# The log-space scan (the paper's)
# --------------------------------------------------------------------------------------------------


def log_scan(log_a: Tensor, log_b: Tensor, chunk: int = CHUNK) -> Tensor:
    """``log h`` for ``h_t = a_t h_{t-1} + b_t``, ``h_{-1} = 0``, over axis 0. log_a, log_b (T, ...).

    Chunked: within a chunk a plain log-space scan; the states entering each chunk come from a
    recursive scan over the chunks (decay ``exp(A)`` of the whole chunk, value at its end).
    """
    T = log_a.shape[0]
    if T <= chunk:
        A = log_a.cumsum(0)
        return A + torch.logcumsumexp(log_b - A, 0)
    n = -(-T // chunk)  # chunks
    pad = n * chunk - T
    if pad:  # pad at the end: a = 1, b = 0 (log b = -inf) leaves the real steps unchanged
        log_a = torch.cat([log_a, log_a.new_zeros(pad, *log_a.shape[1:])])
        log_b = torch.cat([log_b, log_b.new_full((pad, *log_b.shape[1:]), -math.inf)])
    rest = log_a.shape[1:]
    la, lb = log_a.view(n, chunk, *rest), log_b.view(n, chunk, *rest)
    A = la.cumsum(1)  # (n, C, ...): decay since the chunk's start
    local = A + torch.logcumsumexp(lb - A, 1)  # log h with a zero state entering each chunk
    ends = log_scan(A[:, -1], local[:, -1], chunk)  # (n, ...) log h at the end of each chunk
    start = torch.cat([ends.new_full((1, *rest), -math.inf), ends[:-1]])  # entering each chunk
    log_h = torch.logaddexp(local, A + start.unsqueeze(1))  # (n, C, ...)
    return log_h.reshape(n * chunk, *rest)[:T]


def linear_scan_log(log_a: Tensor, log_b: Tensor, h0: Tensor | None = None) -> Tensor:
    """`linear_scan` from ``log a, log b`` by the log-space scan; h0 enters linearly."""
    h = torch.exp(log_scan(log_a, log_b))
    if h0 is not None:
        h = h + torch.exp(log_a.cumsum(0)) * h0  # the initial state decays by Π a
    return h


class _MinRNN(TorchInterop, nn.Module):
    """Shared machinery: parameters, checks, stacking; subclasses give the coefficients."""

    _blocks = 2  # row blocks of weight_ih: minGRU (z, h̃), minLSTM (f, i, h̃)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        batch_first: bool = False,
        device=None,
        dtype=None,
        *,
        scan: str = "blocked",
    ) -> None:
        super().__init__()
        check_positive_int("input_size", input_size)
        check_positive_int("hidden_size", hidden_size)
        check_positive_int("num_layers", num_layers)
        check_bool("batch_first", batch_first)
        check_choice("scan", scan, SCANS)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.batch_first, self.scan = num_layers, batch_first, scan
        kw = {"device": device, "dtype": dtype}
        for k in range(num_layers):
            fan_in = input_size if k == 0 else hidden_size
            rows = self._blocks * hidden_size
            setattr(self, f"weight_ih_l{k}", nn.Parameter(torch.empty(rows, fan_in, **kw)))
            setattr(self, f"bias_ih_l{k}", nn.Parameter(torch.empty(rows, **kw)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for k in range(self.num_layers):
            w, b = getattr(self, f"weight_ih_l{k}"), getattr(self, f"bias_ih_l{k}")
            bound = 1.0 / math.sqrt(w.shape[1])  # as nn.Linear
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        return s + (f", scan={self.scan!r}" if self.scan != "blocked" else "")

    def coefficients(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        """(a, b) from the projections ``pre`` (T, B, blocks*H); both (T, B, H)."""
        raise NotImplementedError

    def log_coefficients(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        """(log a, log b), for the log-space scan."""
        raise NotImplementedError

    def _prepare(self, x: Tensor, h0: Tensor | None):
        name = type(self).__name__
        check_input(name, x, {2: "(T, I)", 3: "(B, T, I)" if self.batch_first else "(T, B, I)"})
        check_features(name, x, self.input_size, self.weight_ih_l0)
        batched = x.dim() == 3
        if not batched:
            x = x.unsqueeze(1)  # (T, 1, I)
        elif self.batch_first:
            x = x.transpose(0, 1)  # (T, B, I)
        B = x.shape[1]
        if h0 is not None:
            want = (self.num_layers, B, self.hidden_size) if batched else (
                self.num_layers, self.hidden_size)
            check_state(name, h0, want, x, "h0")
            h0 = h0 if batched else h0.unsqueeze(1)
        return x, h0, batched

    def _finish(self, out: Tensor, h_n: Tensor, batched: bool):
        if not batched:
            return out.squeeze(1), h_n.squeeze(1)
        return (out.transpose(0, 1) if self.batch_first else out), h_n

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (T, B, I) -> (output (T, B, H), h_n (L, B, H)); a parallel scan when T > 1.

        Under torch.compile / torch.export the recurrence runs as torch's scan op, under
        torch.func and torch.jit.trace as the sequential loop (see `rnnkit.nn.tracing`).
        """
        x, h0, batched = self._prepare(x, h0)
        mode = tracing(x)
        path = None if mode is None else traced_path(mode, LOOP, native=False)
        if path == SCAN:
            from rnnkit.export.recurrence import min_forward

            if h0 is None:
                h0 = x.new_zeros(self.num_layers, x.shape[1], self.hidden_size)
            params = dict(self.named_parameters())
            return self._finish(*min_forward(self.coefficients, params, self.num_layers, x, h0),
                                batched)
        if path == LOOP or x.shape[0] == 1:
            return self._finish(*self._sequential(x, h0), batched)
        finals = []
        for k in range(self.num_layers):
            pre = F.linear(x, getattr(self, f"weight_ih_l{k}"), getattr(self, f"bias_ih_l{k}"))
            h0_k = None if h0 is None else h0[k]
            if self.scan == "log":
                x = linear_scan_log(*self.log_coefficients(pre), h0_k)  # (T, B, H)
            else:
                x = linear_scan(*self.coefficients(pre), h0_k)  # (T, B, H)
            finals.append(x[-1])
        return self._finish(x, torch.stack(finals), batched)

    def forward_sequential(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The same as `forward`, one time step after another: the readable reference."""
        x, h0, batched = self._prepare(x, h0)
        return self._finish(*self._sequential(x, h0), batched)

    def _sequential(self, x: Tensor, h0: Tensor | None) -> tuple[Tensor, Tensor]:
        finals = []
        for k in range(self.num_layers):
            pre = F.linear(x, getattr(self, f"weight_ih_l{k}"), getattr(self, f"bias_ih_l{k}"))
            ab = torch.cat(self.coefficients(pre), -1)  # (T, B, 2H): a, b for all steps at once
            h = x.new_zeros(x.shape[1], self.hidden_size) if h0 is None else h0[k]

            def step(ab_t, s):
                a_t, b_t = ab_t.chunk(2, -1)
                return (torch.addcmul(b_t, a_t, s[0]),)  # h_t = a_t h_{t-1} + b_t

            x, (h,) = loop.scan(step, ab, (h,))
            finals.append(h)
        return x, torch.stack(finals)


class MinGRU(_MinRNN):
    """minGRU: ``h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ g(h̃_t)``; see the module docstring.

    ``MinGRU(input_size, hidden_size, num_layers=1, batch_first=False, *, scan="blocked")``;
    ``forward(x, h0=None) -> (output, h_n)``.
    """

    _blocks = 2

    def coefficients(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        k, v = pre.chunk(2, dim=-1)  # gate logits, candidate
        return torch.sigmoid(-k), torch.sigmoid(k) * positive_activation(v)  # 1 - z, z h̃

    def log_coefficients(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        k, v = pre.chunk(2, dim=-1)
        return -F.softplus(k), -F.softplus(-k) + log_positive_activation(v)  # log(1-z), log(z h̃)


class MinLSTM(_MinRNN):
    """minLSTM: ``h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ g(h̃_t)``, ``f', i' = f, i / (f + i)``.

    ``MinLSTM(input_size, hidden_size, num_layers=1, batch_first=False, *, scan="blocked")``;
    ``forward(x, h0=None) -> (output, h_n)``.
    """

    _blocks = 3

    def coefficients(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        kf, ki, v = pre.chunk(3, dim=-1)
        diff = F.softplus(-kf) - F.softplus(-ki)  # log i - log f
        return torch.sigmoid(-diff), torch.sigmoid(diff) * positive_activation(v)  # f', i' h̃

    def log_coefficients(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        kf, ki, v = pre.chunk(3, dim=-1)
        diff = F.softplus(-kf) - F.softplus(-ki)
        return -F.softplus(diff), -F.softplus(-diff) + log_positive_activation(v)  # log f', i' h̃


def compile_min_rnn(model: nn.Module, **compile_kwargs) -> nn.Module:
    """Compile the coefficient computation of a MinGRU / MinLSTM with ``torch.compile`` in place;
    returns the model.

    Why only the coefficients: computing ``a = σ(-k)`` and ``b = σ(k) g(v)`` over all (T, B, H)
    elements is a chain of elementwise passes over arrays far larger than the cache, which Inductor
    fuses into one loop (``benchmarks/mingru_scan.py --compile`` measures it); the scan itself is
    already a few large ops. Needs a C++ compiler on CPU and tens of seconds on first call.
    ``compile_kwargs`` go to ``torch.compile``; ``dynamic=True`` is the default so that a new
    sequence length does not recompile.
    """
    if not isinstance(model, _MinRNN):
        raise TypeError(f"compile_min_rnn expects a MinGRU or MinLSTM, got {type(model).__name__}")
    compile_kwargs.setdefault("dynamic", True)
    # an instance attribute shadows the method: forward and forward_sequential both pick it up
    model.coefficients = torch.compile(model.coefficients, **compile_kwargs)
    model.log_coefficients = torch.compile(model.log_coefficients, **compile_kwargs)
    return model


allow_weights_only_load(MinGRU, MinLSTM)  # sound: see rnnkit.nn.interop

_RENAMED = {"g": positive_activation, "log_g": log_positive_activation, "scan": linear_scan,
            "scan_log_space": linear_scan_log}


def __getattr__(name: str):
    if name in _RENAMED:
        new = _RENAMED[name]
        warnings.warn(f"rnnkit.nn.mingru.{name} is deprecated; use {new.__name__}",
                      DeprecationWarning, stacklevel=2)
        return new
    raise AttributeError(f"module 'rnnkit.nn.mingru' has no attribute {name!r}")
