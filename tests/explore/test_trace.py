"""rnnkit.viz.trace: every state and gate, checked against the layers' own forward and torch.nn.

Oracles: the layer's forward (output, h_n, c_n), torch.nn stepped one character at a time (c_t of
every layer at every step), and the gate equations written out per step in float64 from torch.nn's
parameter layout; the fast path is tied to the reference loop.
"""

import pytest
import torch

import rnnkit
from rnnkit.data.vocab import Vocab
from rnnkit.models.charlm import CharLM
from rnnkit.viz.trace import KINDS, trace, trace_layer

LAYERS = [
    (rnnkit.LSTM, {}), (rnnkit.GRU, {}), (rnnkit.RNN, {}), (rnnkit.RNN, {"nonlinearity": "relu"}),
    (rnnkit.LSTM, {"proj_size": 3}), (rnnkit.LayerNormLSTM, {}), (rnnkit.LayerNormGRU, {}),
    (rnnkit.LayerNormLSTM, {"bias": False}), (rnnkit.GRU, {"bias": False}),
    (torch.nn.LSTM, {}), (torch.nn.GRU, {}),
]


IDS = [f"{cls.__module__.split('.')[0]}.{cls.__name__}{''.join(f'-{k}={v}' for k, v in kw.items())}"
       for cls, kw in LAYERS]


@pytest.mark.parametrize("layer_cls,kw", LAYERS, ids=IDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_output_and_final_state_equal_the_layers_forward(layer_cls, kw, bidirectional):
    torch.manual_seed(0)
    layer = layer_cls(5, 7, 2, bidirectional=bidirectional, **kw).double().eval()
    x = torch.randn(13, 5, dtype=torch.double)
    states, out = trace_layer(layer, x)
    ref, hn = layer(x[:, None])
    torch.testing.assert_close(out, ref[:, 0], rtol=1e-10, atol=1e-12)
    h_n, c_n = hn if isinstance(hn, tuple) else (hn, None)
    D = 2 if bidirectional else 1
    for li in range(2):
        for d in range(D):
            last = 0 if d else -1  # the reverse direction ends at the first character
            torch.testing.assert_close(states["h"][li, d, last], h_n[li * D + d, 0])
            if c_n is not None:
                torch.testing.assert_close(states["c"][li, d, last], c_n[li * D + d, 0])
    cell = {"LSTM": "lstm", "GRU": "gru"}.get(layer.mode, "rnn")
    assert tuple(states) == KINDS[cell]


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
def test_every_step_equals_torch_nn_stepped(mode):
    """c_t and h_t of both layers at every t, from torch.nn run one character at a time."""
    torch.manual_seed(1)
    ours = getattr(rnnkit, mode)(4, 6, 2).double().eval()
    ref = getattr(torch.nn, mode)(4, 6, 2).double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(9, 4, dtype=torch.double)
    states, _ = trace_layer(ours, x)
    hx = None
    for t in range(9):
        _, hx = ref(x[t:t + 1], hx)
        h, c = hx if mode == "LSTM" else (hx, None)
        torch.testing.assert_close(states["h"][:, 0, t], h)  # (L, H)
        if c is not None:
            torch.testing.assert_close(states["c"][:, 0, t], c)


def _sig(v):
    return 1 / (1 + torch.exp(-v))


@pytest.mark.parametrize("layer_cls", [rnnkit.LSTM, rnnkit.GRU])
def test_gates_follow_the_equations(layer_cls):
    """Each gate, written out per step from torch.nn's layout (LSTM i,f,g,o; GRU r,z,n)."""
    torch.manual_seed(2)
    layer = layer_cls(3, 5, 1, bidirectional=True).double().eval()
    x = torch.randn(8, 3, dtype=torch.double)
    st, _ = trace_layer(layer, x)
    for d, sfx in enumerate(["_l0", "_l0_reverse"]):
        w_ih, w_hh = getattr(layer, "weight_ih" + sfx), getattr(layer, "weight_hh" + sfx)
        b_ih, b_hh = getattr(layer, "bias_ih" + sfx), getattr(layer, "bias_hh" + sfx)
        steps = range(7, -1, -1) if d else range(8)
        h, c = torch.zeros(5, dtype=torch.double), torch.zeros(5, dtype=torch.double)
        for t in steps:
            gi, gh = w_ih @ x[t] + b_ih, w_hh @ h + b_hh
            if layer_cls is rnnkit.LSTM:
                i, f, g, o = (gi + gh).split(5)
                i, f, g, o = _sig(i), _sig(f), torch.tanh(g), _sig(o)
                c = f * c + i * g
                h = o * torch.tanh(c)
                want = {"i": i, "f": f, "g": g, "o": o, "c": c, "h": h}
            else:
                r = _sig(gi[:5] + gh[:5])
                z = _sig(gi[5:10] + gh[5:10])
                n = torch.tanh(gi[10:] + r * gh[10:])
                h = (1 - z) * n + z * h
                want = {"r": r, "z": z, "n": n, "h": h}
            for kind, value in want.items():
                torch.testing.assert_close(st[kind][0, d, t], value, msg=f"{kind} at t={t}")


@pytest.mark.parametrize("layer_cls,kw", [(rnnkit.LSTM, {}), (rnnkit.GRU, {}), (rnnkit.RNN, {}),
                                          (rnnkit.LSTM, {"proj_size": 2}),
                                          (rnnkit.LSTM, {"init_state": "learned"}),
                                          (rnnkit.GRU, {"init_state": "learned"})],
                         ids=["lstm", "gru", "rnn", "lstm-proj", "lstm-learned", "gru-learned"])
def test_fast_path_equals_the_reference_loop(layer_cls, kw):
    torch.manual_seed(3)
    layer = layer_cls(4, 6, 2, bidirectional=True, **kw).double().eval()
    if kw.get("init_state") == "learned":
        with torch.no_grad():
            for p in (layer.h0, getattr(layer, "c0", None)):
                if p is not None:
                    p.normal_()
    x = torch.randn(10, 4, dtype=torch.double)
    fast, out_fast = trace_layer(layer, x)
    ref, out_ref = trace_layer(layer, x, reference=True)
    torch.testing.assert_close(out_fast, out_ref)
    for kind in fast:
        torch.testing.assert_close(fast[kind], ref[kind], msg=kind)
    if kw.get("init_state") == "learned":  # the learned state is used, as the layer does
        torch.testing.assert_close(out_fast, layer(x[:, None])[0][:, 0])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("embed", [0, 4])
def test_charlm_trace_equals_the_models_forward(cell, embed):
    torch.manual_seed(4)
    vocab = Vocab.from_text("abc de,\n")
    model = CharLM(len(vocab), cell=cell, hidden_size=6, num_layers=2, embed_size=embed).eval()
    text = "abc, de\nbad cab"
    tr = trace(model, text, vocab)
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(vocab.encode(text))[:, None])
    torch.testing.assert_close(tr.logits, logits[:, 0])
    torch.testing.assert_close(tr.probs.sum(-1), torch.ones(len(text)))
    assert tr.kinds == KINDS[cell] and tr["h"].shape == (2, 1, len(text), 6)
    best = tr.top_predictions(3, k=2)
    p = torch.softmax(logits[3, 0], -1)
    assert best[0][0] == vocab.chars[int(p.argmax())]
    assert best[0][1] == pytest.approx(float(p.max()), rel=1e-5)
    torch.testing.assert_close(tr.unit("h", 5, layer=1), tr["h"][1, 0, :, 5])


def test_trace_of_a_run_folder_and_of_ids(tiny_run):
    from rnnkit.train import load_model

    model, vocab, _ = load_model(tiny_run)
    by_path = trace(tiny_run, "First Citizen:")
    by_ids = trace(model, vocab.encode("First Citizen:"))
    torch.testing.assert_close(by_path.logits, by_ids.logits)
    assert by_path.text == "First Citizen:" and by_path.chars == vocab.chars


def test_bad_input_says_what_was_expected():
    vocab = Vocab.from_text("ab")
    model = CharLM(2, hidden_size=3, embed_size=0)
    with pytest.raises(ValueError, match="needs its vocabulary"):
        trace(model, "ab")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        trace(model, "abc", vocab)
    with pytest.raises(ValueError, match="empty"):
        trace(model, "", vocab)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 2\)"):
        trace(model, [0, 5])
    with pytest.raises(ValueError, match="Expected 2, got 3"):
        trace(model, "ab", Vocab.from_text("abc"))
    with pytest.raises(ValueError, match="got MinGRU"):
        trace_layer(rnnkit.MinGRU(2, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="input_size=2"):
        trace_layer(rnnkit.LSTM(2, 3), torch.zeros(4, 5))
    with pytest.raises(KeyError, match="h, r, z, n"):
        trace(CharLM(2, cell="gru", hidden_size=3, embed_size=0), "ab", vocab)["c"]
