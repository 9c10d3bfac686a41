"""Layer-normalised LSTM and GRU (Ba, Kiros & Hinton 2016), on the fused recurrence.

Formulation (Ba et al. 2016, section 3.1 / appendix): layer norm is applied separately to the input
and the recurrent pre-activations, each over all gates together, and to the cell before its tanh.
``LN(v) = (v - mean(v)) / sqrt(var(v) + eps)`` over the last axis, with ``eps = 1e-5``.

LayerNormLSTM (gate order i, f, g, o as torch.nn):

    gates = γ_ih ⊙ LN(W_ih x_t) + γ_hh ⊙ LN(W_hh h_{t-1}) + b_ih + b_hh          (B, 4H)
    i, f, o = σ(gates_i), σ(gates_f), σ(gates_o);   g = tanh(gates_g)
    c_t = f ⊙ c_{t-1} + i ⊙ g                                                     (B, H)
    h_t = o ⊙ tanh(γ_c ⊙ LN(c_t) + β_c)                                           (B, H)

LayerNormGRU (gate order r, z, n as torch.nn):

    gi = γ_ih ⊙ LN(W_ih x_t) + b_ih,   gh = γ_hh ⊙ LN(W_hh h_{t-1}) + b_hh          (B, 3H)
    r = σ(gi_r + gh_r);  z = σ(gi_z + gh_z);  n = tanh(gi_n + r ⊙ gh_n)
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

The layer norms carry no shift of their own: ``b_ih + b_hh`` is the shift (the paper's single
bias ``b``), which keeps torch.nn's parameter names. Extra parameters per layer and direction
(suffix ``_l{k}`` and ``_reverse`` as torch.nn): ``ln_ih_weight`` γ_ih (G,), ``ln_hh_weight``
γ_hh (G,), and for the LSTM ``ln_cell_weight`` γ_c (H,), ``ln_cell_bias`` β_c (H,) (only with
``bias=True``). Gains start at 1, shifts at 0.

Same constructor, inputs and outputs as ``rnnkit.LSTM`` / ``rnnkit.GRU`` (batch_first,
bidirectional, num_layers, dropout, packed sequences, ``lengths=``, ``hx``, ``init_state``), plus
the recurrent-dropout and ``compiled`` arguments of the ``Fused*`` layers (`rnnkit.nn.fused`).
``backend="auto"`` runs the fast path (`rnnkit.nn.fast`, hand-written BPTT; with
``compiled``, the time loop and the layer norms in C++); ``backend="loop"`` runs the readable
steps below through `rnnkit.nn.loop.scan` (the oracle the tests compare against).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn.cells import gru_gates
from rnnkit.nn.fast import products
from rnnkit.nn.fast.ops import EPS
from rnnkit.nn.fused import FusedMixin
from rnnkit.nn.interop import allow_weights_only_load
from rnnkit.nn.loop import column_major
from rnnkit.nn.paths import COMPILED, LOOP, SCAN
from rnnkit.nn.rnn import GRU, LSTM


def layer_norm(v: Tensor, eps: float | None = None) -> Tensor:
    """``(v - mean) / sqrt(var + eps)`` over the last axis, no gain or shift; eps = EPS (1e-5)."""
    return F.layer_norm(v, v.shape[-1:], eps=_eps() if eps is None else eps)


@torch.compiler.assume_constant_result
def _eps() -> float:
    # torch.compile(dynamic=True) turns a float read from a global or a default argument into a
    # symbol; inside a scan body that symbol has no value, and layer_norm needs one. A constant
    # result is a constant to the compiler.
    return EPS


def ln_lstm_step(
    gi: Tensor,
    h_in: Tensor,
    c: Tensor,
    w_hh: Tensor,
    gamma_hh: Tensor,
    gamma_c: Tensor,
    beta_c: Tensor,
    w_hr: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One LayerNormLSTM step; ``gi = γ_ih ⊙ LN(W_ih x) + b_ih + b_hh`` is precomputed.

    gi (B, 4H), h_in (B, H_out), c (B, H), w_hh (4H, H_out), gamma_hh (4H,), gamma_c, beta_c (H,),
    w_hr (P, H) -> (h' (B, H_out), c' (B, H)).
    """
    gates = gi + gamma_hh * layer_norm(h_in @ w_hh.t())  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)  # 4 x (B, H)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(gamma_c * layer_norm(c_new) + beta_c)
    if w_hr is not None:
        h_new = h_new @ w_hr.t()  # (B, P)
    return h_new, c_new


def ln_gru_step(
    gi: Tensor, h_in: Tensor, h: Tensor, w_hh: Tensor, gamma_hh: Tensor, b_hh: Tensor | None
) -> Tensor:
    """One LayerNormGRU step; ``gi = γ_ih ⊙ LN(W_ih x) + b_ih`` is precomputed.

    The recurrent product sees ``h_in`` (h, or h with a variational-dropout mask); the carry sees h.
    gi (B, 3H), h_in, h (B, H), w_hh (3H, H), gamma_hh (3H,), b_hh (3H,) or None -> h' (B, H).
    """
    gh = gamma_hh * layer_norm(h_in @ w_hh.t())  # (B, 3H)
    if b_hh is not None:
        gh = gh + b_hh
    return gru_gates(gi, gh, h)


class _LayerNormMixin(FusedMixin):
    """Adds the layer-norm parameters and the LN input projection to a ``Fused*`` layer."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        w = self.weight_ih_l0
        kw = {"device": w.device, "dtype": w.dtype}
        G = w.shape[0]
        self._ln_names: list[str] = []
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                sizes = {"ln_ih_weight": G, "ln_hh_weight": G}
                if self.mode == "LSTM":
                    sizes["ln_cell_weight"] = self.hidden_size
                    if self.bias:
                        sizes["ln_cell_bias"] = self.hidden_size
                for base, size in sizes.items():
                    setattr(self, base + sfx, nn.Parameter(torch.empty(size, **kw)))
                    self._ln_names.append(base + sfx)
        self._reset_ln()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._reset_ln()

    def _reset_ln(self) -> None:
        for name in getattr(self, "_ln_names", ()):  # absent while RNNBase.__init__ runs
            nn.init.zeros_(getattr(self, name)) if "bias" in name else nn.init.ones_(
                getattr(self, name)
            )

    def _ln(self, base: str, layer: int, reverse: bool) -> Tensor | None:
        return getattr(self, f"{base}_l{layer}" + ("_reverse" if reverse else ""), None)

    def _fast_inputs(self, x: Tensor, w: dict, layer: int, reverse: bool, path: str):
        gamma_ih = self._ln("ln_ih_weight", layer, reverse)
        shift, params = self._params(w, layer, reverse)
        # the traceable paths keep F.linear; the fast path's products are in products.py
        linear = F.linear if path in (LOOP, SCAN) else products.linear
        xp = linear(x, w["w_ih"])  # (T, B, G): one matrix product for all T steps
        if path == COMPILED:  # the compiled loop applies γ_ih LN(·) + shift to each row as it goes
            if self.mode == "GRU":
                return "ln_gru_x", xp, (*params, gamma_ih, shift)  # shift None: bias=False
            shift = torch.zeros_like(gamma_ih) if shift is None else shift  # bias=False
            return "ln_lstm_x", xp, (*params, gamma_ih, shift)
        # γ_ih ⊙ LN(W_ih x) + shift for all T steps in one layer-norm pass
        return self.fast_cell, F.layer_norm(xp, xp.shape[-1:], gamma_ih, shift, EPS), params

    def _params(self, w: dict, layer: int, reverse: bool):
        """(the input projection's shift, the cell's parameters in the fast kernels' order)."""
        gamma_hh = self._ln("ln_hh_weight", layer, reverse)
        if self.mode == "GRU":
            return w["b_ih"], (gamma_hh, w["b_hh"])
        shift = None if w["b_ih"] is None else w["b_ih"] + w["b_hh"]
        beta_c = self._ln("ln_cell_bias", layer, reverse)
        gamma_c = self._ln("ln_cell_weight", layer, reverse)
        if beta_c is None:  # bias=False: no shift anywhere, a constant zero keeps one code path
            beta_c = torch.zeros_like(gamma_c)
        return shift, (gamma_hh, gamma_c, beta_c)

    def _step(self, w: dict, w_hh: Tensor, params: tuple, hidden_mask: Tensor | None):
        """``step(gi_t, state) -> state`` for the readable path; ``hidden_mask`` on h_in."""
        w_hh = column_major(w_hh)  # every step multiplies by its transpose
        mask = (lambda h: h) if hidden_mask is None else (lambda h: h * hidden_mask)
        if self.mode == "LSTM":
            return lambda g, s: ln_lstm_step(g, mask(s[0]), s[1], w_hh, *params, w["w_hr"])
        return lambda g, s: (ln_gru_step(g, mask(s[0]), s[0], w_hh, *params),)


class LayerNormLSTM(_LayerNormMixin, LSTM):
    """Layer-normalised LSTM (Ba et al. 2016); see the module docstring for the equations.

    input (T, B, I) or (B, T, I) -> output (T, B, D*H_out), (h_n, c_n) (L*D, B, ·), as rnnkit.LSTM.
    """

    @property
    def fast_cell(self) -> str | None:
        return None if self.proj_size else "ln_lstm"


class LayerNormGRU(_LayerNormMixin, GRU):
    """Layer-normalised GRU; see the module docstring for the equations.

    input (T, B, I) or (B, T, I) -> output (T, B, D*H), h_n (L*D, B, H), as rnnkit.GRU.
    """

    @property
    def fast_cell(self) -> str | None:
        return "ln_gru"


allow_weights_only_load(LayerNormLSTM, LayerNormGRU)  # sound: see rnnkit.nn.interop
