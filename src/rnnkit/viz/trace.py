"""Every activation of a character LM over a text: states, cell states, gates, predictions.

``trace(model, text, vocab)`` runs a char-LM run (``rnnkit.train.load_model``) over one text and
keeps, for every step t, layer l and direction d, what the recurrent layer computes inside (the
quantities Karpathy, Johnson & Fei-Fei 2015 colour text by):

    LSTM (gate order i, f, g, o as torch.nn):
        a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh                            (4H,)
        i, f, o = σ(a_i), σ(a_f), σ(a_o);   g = tanh(a_g)
        c_t = f ⊙ c_{t-1} + i ⊙ g;          h_t = o ⊙ tanh(c_t)   (then W_hr h_t with proj_size)
    GRU (r, z, n):
        r = σ(gi_r + gh_r), z = σ(gi_z + gh_z), n = tanh(gi_n + r ⊙ gh_n)
        h_t = (1 - z) ⊙ n + z ⊙ h_{t-1};   gi = W_ih x_t + b_ih,  gh = W_hh h_{t-1} + b_hh
    RNN: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)   (or relu)
    LayerNormLSTM / LayerNormGRU: the same, with the layer norms of rnnkit.nn.layernorm
    (γ_ih LN(W_ih x), γ_hh LN(W_hh h), and h_t = o ⊙ tanh(γ_c LN(c_t) + β_c) for the LSTM).

The gates are computed here from the layer's own parameters (``weight_ih_l0``, ``bias_hh_l1_reverse``,
``ln_hh_weight_l0``..., torch.nn's layout), so any layer with torch.nn's parameter names works,
torch.nn's own included; tests/explore checks the result against the layer's forward. Inference
only: no dropout, the initial state is zero (or the layer's learned ``h0``/``c0``).

Shapes: T time (characters), L layers, D directions, H hidden, P proj_size, V vocabulary.
``Trace.states[kind]`` is (L, D, T, H) (``"h"`` is (L, D, T, P) with projections);
``Trace.logits`` is (T, V): row t scores the character that follows character t.
"""

# ruff: noqa: F722 (jaxtyping shape strings such as "T H" are not Python expressions)
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

#: what each cell exposes, in order: state(s) first, then its gates in torch.nn's gate order
KINDS = {"lstm": ("h", "c", "i", "f", "g", "o"), "gru": ("h", "r", "z", "n"), "rnn": ("h",)}
#: the gates squashed by a sigmoid: their values lie in (0, 1) (gate saturation is about these)
SIGMOID_GATES = ("i", "f", "o", "r", "z")
_MODES = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn"}
_LN_EPS = 1e-5  # rnnkit.nn.layernorm's epsilon, torch.nn.LayerNorm's default


@dataclass(frozen=True)
class Trace:
    """What `trace` returns. ``tr["c"][l, d, t, j]``: unit j's cell state after character t."""

    text: str
    ids: Tensor  # (T,) character ids
    cell: str  # "lstm", "gru" or "rnn"
    states: dict[str, Tensor]  # kind -> (L, D, T, H)
    logits: Float[Tensor, "T V"]  # next-character scores after each character
    chars: tuple[str, ...] | None = None  # the vocabulary, when the text was given as a string

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.states)

    @property
    def num_layers(self) -> int:
        return self.states["h"].shape[0]

    @property
    def num_directions(self) -> int:
        return self.states["h"].shape[1]

    @property
    def probs(self) -> Float[Tensor, "T V"]:
        """Softmax of the logits: row t is the distribution of the character after character t."""
        return torch.softmax(self.logits.double(), dim=-1).to(self.logits.dtype)

    def __getitem__(self, kind: str) -> Tensor:
        if kind not in self.states:
            raise KeyError(f"kind must be one of {', '.join(self.kinds)} for a {self.cell}; got {kind!r}")
        return self.states[kind]

    def unit(self, kind: str, unit: int, layer: int = 0, direction: int = 0) -> Tensor:
        """One unit's values over the text, (T,)."""
        values = self[kind]
        L, D, _, H = values.shape
        if not (0 <= layer < L and 0 <= direction < D and 0 <= unit < H):
            raise IndexError(f"layer, direction, unit must lie in [0, {L}), [0, {D}), [0, {H}); "
                             f"got {layer}, {direction}, {unit}")
        return values[layer, direction, :, unit]

    def top_predictions(self, t: int, k: int = 5) -> list[tuple[str | int, float]]:
        """The k likeliest characters after character t, with their probabilities."""
        p, idx = self.probs[t].topk(min(k, self.logits.shape[-1]))
        label = (lambda i: self.chars[i]) if self.chars else (lambda i: i)
        return [(label(int(i)), float(q)) for q, i in zip(p, idx)]


def layer_kind(layer: nn.Module) -> tuple[str, bool]:
    """("lstm" | "gru" | "rnn", layer-normalised?) for a layer with torch.nn's attributes."""
    mode = getattr(layer, "mode", None)
    if mode not in _MODES or not hasattr(layer, "weight_hh_l0"):
        raise ValueError("trace needs an RNN, LSTM or GRU layer with torch.nn's parameters "
                         f"(rnnkit's, torch.nn's or LayerNormLSTM/GRU); got {type(layer).__name__}")
    return _MODES[mode], hasattr(layer, "ln_hh_weight_l0")


@torch.no_grad()
def trace_layer(
    layer: nn.Module, x: Float[Tensor, "T I"], *, reference: bool = False
) -> tuple[dict[str, Tensor], Tensor]:
    """All activations of a recurrent layer over one unbatched sequence x (T, I).

    Returns ({kind: (L, D, T, ·)}, output (T, D*H_out)); the output is what ``layer(x)[0]`` gives.

    Two paths, tested equal: ``reference=True`` (and every layer-normalised layer) steps through
    time in Python, one matrix-vector product per step; the default for plain layers lets
    torch.nn's fused kernel compute h_t for all t (what the layer's own forward runs), then finds
    every gate from h_{t-1} in one matrix product over all T, and the LSTM's c_t by the cheap
    elementwise recurrence c_t = f_t c_{t-1} + i_t g_t.
    """
    cell, ln = layer_kind(layer)
    if x.dim() != 2 or x.size(-1) != layer.input_size:
        raise ValueError(f"x must be (T, input_size={layer.input_size}), got shape {tuple(x.shape)}")
    D = 2 if layer.bidirectional else 1
    per_layer = []
    inp = x
    for li in range(layer.num_layers):
        dirs = [_direction(layer, cell, ln, inp, li, d, reference or ln) for d in range(D)]
        per_layer.append(dirs)
        # (T, D*H_out): the next layer's input
        inp = dirs[0]["h"] if D == 1 else torch.cat([run["h"] for run in dirs], dim=-1)
    return {k: _stack([[run[k] for run in dirs] for dirs in per_layer]) for k in KINDS[cell]}, inp


def _stack(rows: list[list[Tensor]]) -> Tensor:
    """(L, D, T, ·) from each layer's and direction's (T, ·); a view when there is only one (a
    copy of a 10,000-character trace costs as much as computing it)."""
    if len(rows) == 1 and len(rows[0]) == 1:
        return rows[0][0][None, None]
    return torch.stack([torch.stack(row) for row in rows])


def _direction(layer, cell: str, ln: bool, x: Tensor, li: int, d: int,
               reference: bool) -> dict[str, Tensor]:
    """One layer and direction over x (T, I): {kind: (T, ·)} in time order."""
    sfx = f"_l{li}" + ("_reverse" if d else "")
    p = {name: getattr(layer, name + sfx, None) for name in (
        "weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr",
        "ln_ih_weight", "ln_hh_weight", "ln_cell_weight", "ln_cell_bias")}
    if not getattr(layer, "bias", True):
        p["bias_ih"] = p["bias_hh"] = None
    D = 2 if layer.bidirectional else 1
    H = p["weight_hh"].shape[0] // {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    h0, c0 = _initial(layer, li * D + d, p["weight_hh"], H)
    xs = x.flip(0) if d else x  # the reverse direction reads the text backwards
    shift = p["bias_ih"]
    if cell != "gru" and shift is not None:
        shift = shift + p["bias_hh"]  # LSTM and RNN add both biases before the nonlinearity
    if ln:
        xp = F.linear(xs, p["weight_ih"])  # (T, G): the input projection of all steps at once
        xp = F.layer_norm(xp, xp.shape[-1:], p["ln_ih_weight"], shift, _LN_EPS)
    else:
        xp = F.linear(xs, p["weight_ih"], shift)  # (T, G)
    nonlinearity = getattr(layer, "nonlinearity", "tanh")
    if not reference:
        hs = _native_states(cell, p, xs, h0, c0, nonlinearity)
        out = _gates_from_states(cell, xp, hs, h0, c0, p)
    elif cell == "lstm":
        out = _lstm_loop(xp, h0, c0, p, ln)
    elif cell == "gru":
        out = _gru_loop(xp, h0, p, ln)
    else:
        out = _rnn_loop(xp, h0, p, nonlinearity)
    return {k: v.flip(0) for k, v in out.items()} if d else out


def _initial(layer, index: int, w_hh: Tensor, H: int) -> tuple[Tensor, Tensor]:
    """(h0 (H_out,), c0 (H,)): zeros, or the layer's learned initial state (init_state="learned")."""
    learned = getattr(layer, "init_state", "zeros") == "learned"
    h0 = layer.h0[index].to(w_hh) if learned else w_hh.new_zeros(w_hh.shape[1])
    c0 = layer.c0[index].to(w_hh) if learned and hasattr(layer, "c0") else w_hh.new_zeros(H)
    return h0, c0


def _native_states(cell: str, p: dict, x: Tensor, h0: Tensor, c0: Tensor,
                   nonlinearity: str) -> Tensor:
    """h_t for all t (T, H_out) from torch.nn's kernel for one layer and direction.

    A weightless torch.nn layer (on the meta device) runs with this direction's parameters put in
    by ``functional_call``: nothing is copied, and it is the kernel the layer's own forward calls.
    """
    w_hh, P = p["weight_hh"], p["weight_hr"]
    kw = {"bias": p["bias_ih"] is not None, "device": "meta", "dtype": w_hh.dtype}
    I, H = x.shape[1], w_hh.shape[0] // {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    if cell == "lstm":
        m, hx = nn.LSTM(I, H, proj_size=P.shape[0] if P is not None else 0, **kw), (h0[None], c0[None])
    elif cell == "gru":
        m, hx = nn.GRU(I, H, **kw), h0[None]
    else:
        m, hx = nn.RNN(I, H, nonlinearity=nonlinearity, **kw), h0[None]
    params = {name + "_l0": p[name] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                                 "weight_hr") if p[name] is not None}
    return torch.func.functional_call(m, params, (x, hx))[0]  # (T, H_out)


def _gates_from_states(cell: str, xp: Tensor, hs: Tensor, h0: Tensor, c0: Tensor,
                       p: dict) -> dict[str, Tensor]:
    """Every gate from the states: a_t depends on h_{t-1} only, so all T at once.

    Computed in place in ``xp`` (this direction's own buffer): the gates are views of it.
    """
    if cell == "rnn":
        return {"h": hs}
    w_hh, T = p["weight_hh"], xp.shape[0]
    if cell == "gru":
        H = xp.shape[1] // 3
        prev = torch.cat([h0[None], hs[:-1]])  # (T, H): h_{t-1}
        gh = F.linear(prev, w_hh, p["bias_hh"])  # (T, 3H)
        rz = xp[:, :2 * H].add_(gh[:, :2 * H]).sigmoid_()  # (T, 2H)
        n = xp[:, 2 * H:].addcmul_(rz[:, :H], gh[:, 2 * H:]).tanh_()
        return {"h": hs, "r": rz[:, :H], "z": rz[:, H:], "n": n}
    H = xp.shape[1] // 4
    xp[:1].addmm_(h0[None], w_hh.t())  # a_t = xp_t + W_hh h_{t-1}   (T, 4H)
    xp[1:].addmm_(hs[:-1], w_hh.t())
    gates = xp.view(T, 4, H)
    gates[:, :2].sigmoid_()
    gates[:, 2].tanh_()
    gates[:, 3].sigmoid_()
    i, f, g, o = gates.unbind(1)  # (T, H) each
    ig = i * g
    C = torch.empty_like(ig)  # (T, H)
    c = c0
    for t in range(T):  # elementwise only: H multiply-adds per step
        c = torch.addcmul(ig[t], f[t], c, out=C[t])
    return {"h": hs, "c": C, "i": i, "f": f, "g": g, "o": o}


def _ln(v: Tensor, gain: Tensor) -> Tensor:
    return gain * F.layer_norm(v, v.shape[-1:], eps=_LN_EPS)


def _lstm_loop(xp: Tensor, h: Tensor, c: Tensor, p: dict, ln: bool) -> dict[str, Tensor]:
    """The LSTM recurrence, one step per character; the gates are recomputed for all T at the end."""
    T, G = xp.shape
    H = G // 4
    w_hh, w_hr = p["weight_hh"], p["weight_hr"]
    A = xp.new_empty(T, G)  # (T, 4H): pre-activations a_t
    C = xp.new_empty(T, H)  # (T, H): cell states
    Hs = xp.new_empty(T, h.shape[0])  # (T, H_out): hidden states
    g_c, b_c = p["ln_cell_weight"], p["ln_cell_bias"]
    for t in range(T):
        if ln:
            a = torch.add(xp[t], _ln(torch.mv(w_hh, h), p["ln_hh_weight"]), out=A[t])
        else:
            a = torch.addmv(xp[t], w_hh, h, out=A[t])  # (4H,)
        s = torch.sigmoid(a)
        c = torch.addcmul(s[H:2 * H] * c, s[:H], torch.tanh(a[2 * H:3 * H]), out=C[t])
        cc = c if not ln else (_ln(c, g_c) + b_c if b_c is not None else _ln(c, g_c))
        if w_hr is None:
            h = torch.mul(s[3 * H:], torch.tanh(cc), out=Hs[t])
        else:
            h = torch.mv(w_hr, s[3 * H:] * torch.tanh(cc), out=Hs[t])  # (P,)
    i, f, g, o = A.chunk(4, dim=1)
    return {"h": Hs, "c": C, "i": torch.sigmoid(i), "f": torch.sigmoid(f), "g": torch.tanh(g),
            "o": torch.sigmoid(o)}


def _gru_loop(gi: Tensor, h: Tensor, p: dict, ln: bool) -> dict[str, Tensor]:
    """The GRU recurrence; gh = W_hh h_{t-1} + b_hh is kept so r, z, n follow for all T at once."""
    T, G = gi.shape
    H = G // 3
    w_hh, b_hh = p["weight_hh"], p["bias_hh"]
    GH = gi.new_zeros(T, G)  # (T, 3H)
    Hs = gi.new_empty(T, H)
    for t in range(T):
        if ln:
            gh = torch.add(_ln(torch.mv(w_hh, h), p["ln_hh_weight"]),
                           b_hh if b_hh is not None else 0.0, out=GH[t])
        elif b_hh is not None:
            gh = torch.addmv(b_hh, w_hh, h, out=GH[t])
        else:
            gh = torch.mv(w_hh, h, out=GH[t])
        rz = torch.sigmoid(gi[t, :2 * H] + gh[:2 * H])
        n = torch.tanh(torch.addcmul(gi[t, 2 * H:], rz[:H], gh[2 * H:]))
        h = torch.addcmul(n, rz[H:], h - n, out=Hs[t])  # (1 - z) n + z h
    r = torch.sigmoid(gi[:, :H] + GH[:, :H])
    z = torch.sigmoid(gi[:, H:2 * H] + GH[:, H:2 * H])
    n = torch.tanh(gi[:, 2 * H:] + r * GH[:, 2 * H:])
    return {"h": Hs, "r": r, "z": z, "n": n}


def _rnn_loop(xp: Tensor, h: Tensor, p: dict, nonlinearity: str) -> dict[str, Tensor]:
    """The Elman recurrence h_t = σ(xp_t + W_hh h_{t-1})."""
    Hs = xp.new_empty(xp.shape)
    for t in range(xp.shape[0]):
        pre = torch.addmv(xp[t], p["weight_hh"], h)
        h = torch.tanh(pre, out=Hs[t]) if nonlinearity == "tanh" else torch.clamp(pre, min=0, out=Hs[t])
    return {"h": Hs}


def _encode(text, vocab, vocab_size: int) -> tuple[str, Tensor, tuple[str, ...] | None]:
    """(text, ids (T,), characters) from a str (with its vocabulary) or from ids."""
    if isinstance(text, str):
        if vocab is None:
            raise ValueError("a text given as a string needs its vocabulary: trace(model, text, vocab)")
        if len(vocab) != vocab_size:
            raise ValueError(f"vocab must have the model's vocab_size characters. "
                             f"Expected {vocab_size}, got {len(vocab)}")
        ids = torch.from_numpy(vocab.encode(text))
        return text, ids, tuple(vocab.chars)
    ids = torch.as_tensor(np.asarray(text), dtype=torch.long)
    if ids.dim() != 1:
        raise ValueError(f"ids must be one sequence (T,), got shape {tuple(ids.shape)}")
    if ids.numel() and not (0 <= int(ids.min()) and int(ids.max()) < vocab_size):
        raise ValueError(f"ids must lie in [0, {vocab_size}), got values in "
                         f"[{int(ids.min())}, {int(ids.max())}]")
    chars = tuple(vocab.chars) if vocab is not None else None
    return (vocab.decode(ids) if vocab is not None else ""), ids, chars


@torch.no_grad()
def trace(model, text, vocab=None) -> Trace:
    """Run a char LM over ``text`` and keep every state, gate and next-character distribution.

    ``model`` is a `rnnkit.CharLM` (``model, vocab, cfg = rnnkit.train.load_model(run)``)
    or a run folder; ``text`` a str (with ``vocab``) or character ids (T,). Example::

        tr = trace("runs/shakespeare", "To be, or not to be")
        tr["c"][0, 0, :, 42]        # unit 42's cell state over the text, layer 0
        tr.top_predictions(3)       # [(char, probability), ...] after "To b"
    """
    if isinstance(model, (str, Path)):
        from rnnkit.train import load_model

        model, run_vocab, _ = load_model(model)
        vocab = vocab if vocab is not None else run_vocab
    for attr in ("rnn", "head", "vocab_size"):
        if not hasattr(model, attr):
            raise ValueError(f"trace needs a character LM (rnnkit.CharLM: rnn, head, vocab_size); "
                             f"got {type(model).__name__} without .{attr}")
    cell, _ = layer_kind(model.rnn)
    text, ids, chars = _encode(text, vocab, model.vocab_size)
    if ids.numel() == 0:
        raise ValueError("text must hold at least one character, got an empty text")
    w = model.head.weight
    ids = ids.to(w.device)
    embed = getattr(model, "embed", None)
    x = embed(ids) if embed is not None else F.one_hot(ids, model.vocab_size).to(w.dtype)  # (T, E)
    states, out = trace_layer(model.rnn, x)
    return Trace(text, ids.cpu(), cell, {k: v.cpu() for k, v in states.items()},
                 model.head(out).cpu(), chars)
