"""Every kind of rnnkit layer, small, for the tracing tests (compile, export, torch.func).

Each entry builds a seeded layer in eval mode and an input maker ``make(T, B)`` returning the
positional args (and kwargs) of one call; ``batch_axis`` and ``time_axis`` say where B and T sit
in the first input. Dropouts are on where the layer has them: in eval mode they do what eval
does (zoneout keeps 1 - p of each update; the others are identity).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

import rnnkit

I, H = 3, 4


def _x(T, B, I=I, batch_first=False):
    g = torch.Generator().manual_seed(1000 * T + B)
    return torch.randn((B, T, I) if batch_first else (T, B, I), generator=g)


def _lengths(T, B):
    """Decreasing lengths in [1, T], the first sequence full."""
    return torch.tensor([max(1, T - k) for k in range(B)])


@dataclass
class Kind:
    name: str
    build: object  # () -> module
    make: object  # (T, B) -> (args, kwargs)
    batch_axis: int = 1
    time_axis: int | None = 0
    extra: dict = field(default_factory=dict)


def _layer(cls, **kw):
    def build():
        torch.manual_seed(0)
        return cls(I, H, **kw).eval()
    return build


def _plain(batch_first=False):
    return lambda T, B: ((_x(T, B, batch_first=batch_first),), {})


def _with_lengths(T, B):
    return (_x(T, B),), {"lengths": _lengths(T, B)}


def _cell(cls, n_state):
    def make(T, B):
        g = torch.Generator().manual_seed(B)
        state = tuple(torch.randn(B, H, generator=g) for _ in range(n_state))
        return (torch.randn(B, I, generator=g), state if n_state == 2 else state[0]), {}
    return make


def _model(build_model, make):
    def build():
        torch.manual_seed(0)
        return build_model().eval()
    return build, make


def _ids(shape, vocab=7, seed=0):
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


LAYERS = [
    Kind("RNN-relu-2layer-bi", _layer(rnnkit.RNN, nonlinearity="relu", num_layers=2,
                                      bidirectional=True), _plain()),
    Kind("LSTM-proj-batch-first", _layer(rnnkit.LSTM, proj_size=2, batch_first=True),
         _plain(batch_first=True), batch_axis=0, time_axis=1),
    Kind("GRU-lengths", _layer(rnnkit.GRU, bidirectional=True), _with_lengths),
    Kind("FusedRNN", _layer(rnnkit.FusedRNN, recurrent_dropout=0.3), _plain()),
    Kind("FusedLSTM-zoneout", _layer(rnnkit.FusedLSTM, zoneout=(0.1, 0.2), weight_dropout=0.2),
         _with_lengths),
    Kind("FusedGRU", _layer(rnnkit.FusedGRU, num_layers=2, dropout=0.3, zoneout=0.1), _plain()),
    Kind("LayerNormLSTM-bi", _layer(rnnkit.LayerNormLSTM, bidirectional=True), _with_lengths),
    Kind("LayerNormGRU", _layer(rnnkit.LayerNormGRU, recurrent_dropout=0.2), _plain()),
    Kind("Elman-lengths", lambda: (torch.manual_seed(0), rnnkit.Elman(I, H, 2).eval())[1],
         _with_lengths),
    Kind("Recurrent-affine", lambda: (torch.manual_seed(0), rnnkit.Recurrent(
        torch.nn.Linear(I, H), torch.nn.Linear(H, H), torch.nn.Linear(H, 2),
        hidden_size=H).eval())[1], _with_lengths),
    Kind("MinGRU-2layer", _layer(rnnkit.MinGRU, num_layers=2), _plain()),
    Kind("MinLSTM-log", _layer(rnnkit.MinLSTM, scan="log"), _plain()),
    Kind("RNNCell", _layer(rnnkit.RNNCell, nonlinearity="relu"), _cell(rnnkit.RNNCell, 1),
         batch_axis=0, time_axis=None),
    Kind("LSTMCell", _layer(rnnkit.LSTMCell), _cell(rnnkit.LSTMCell, 2), batch_axis=0,
         time_axis=None),
    Kind("GRUCell", _layer(rnnkit.GRUCell), _cell(rnnkit.GRUCell, 1), batch_axis=0,
         time_axis=None),
]

MODELS = [
    Kind("CharLM", *_model(lambda: rnnkit.CharLM(7, hidden_size=H, embed_size=3, num_layers=2),
                           lambda T, B: ((_ids((T, B)),), {}))),
    Kind("Tagger-lengths", *_model(lambda: rnnkit.Tagger(I, H, 3, cell="gru", bidirectional=True),
                                   lambda T, B: ((_x(T, B, batch_first=True), _lengths(T, B)), {})),
         batch_axis=0, time_axis=1),
    Kind("SequenceClassifier", *_model(
        lambda: rnnkit.SequenceClassifier(I, H, 2, cell="lstm", bidirectional=True),
        lambda T, B: ((_x(T, B, batch_first=True), _lengths(T, B)), {})), batch_axis=0,
        time_axis=1),
    Kind("Seq2Seq", *_model(lambda: rnnkit.Seq2Seq(7, hidden_size=H, embed_size=3, cell="lstm"),
                            lambda T, B: ((_ids((B, T)), _lengths(T, B), _ids((B, T), seed=1)),
                                          {})), batch_axis=0, time_axis=1),
]

ALL = LAYERS + MODELS


def leaves(out) -> list[torch.Tensor]:
    return [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def assert_close(got, want, rtol: float = 1e-5, what: str = "") -> None:
    """float32: max |got - want| <= rtol * max |want| for each output, shapes equal."""
    got, want = [g.detach() for g in leaves(got)], [w.detach() for w in leaves(want)]
    assert len(got) == len(want), what
    for g, w in zip(got, want):
        assert g.shape == w.shape, f"{what}: {tuple(g.shape)} != {tuple(w.shape)}"
        scale = float(w.abs().max()) if w.numel() else 0.0
        err = float((g - w).abs().max()) if w.numel() else 0.0
        assert err <= rtol * max(scale, 1e-6), f"{what}: max error {err:.3g}, scale {scale:.3g}"
