"""The explorer's rankings and packing: known answers, numpy's own statistics, the error bound."""

import base64

import numpy as np
import pytest
import torch

from rnnkit.explore import analysis, feature_scan, saturation, text_features, unit_search
from rnnkit.explore.bundle import MAX_CHARS, check_text, dequantize, make_bundle, quantize
from rnnkit.train import load_model
from rnnkit.viz.trace import Trace, trace


def test_text_features_known_answers():
    f = text_features('a "b(c)"\nxy')
    #                  a   " b ( c ) " \n x y
    assert f["in quotes"].tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    assert f["bracket depth"].tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    assert f["position in line"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2]
    assert f["start of word"].tolist() == [1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0]
    assert text_features("))(")["bracket depth"].tolist() == [0, 0, 1]  # never below zero


def _toy_trace(values: dict[str, np.ndarray], text: str) -> Trace:
    """A Trace holding given values (T, H) as layer 0, direction 0."""
    states = {k: torch.from_numpy(v)[None, None] for k, v in values.items()}
    T = len(text)
    return Trace(text, torch.zeros(T, dtype=torch.long), "lstm", states, torch.zeros(T, 3),
                 tuple("abc"))


def test_feature_scan_is_pearsons_r():
    rng = np.random.default_rng(0)
    text = 'ab "cd" (e)\nfg "h"\nij(k(l))'
    T = len(text)
    h = rng.normal(size=(T, 4))
    h[:, 2] = text_features(text)["position in line"] * 0.1 + rng.normal(size=T) * 0.01
    h[:, 3] = 0.5  # a constant unit has no correlation
    tr = _toy_trace({"h": h, "c": rng.normal(size=(T, 4))}, text)
    scan = feature_scan(tr, top=8)
    top = scan["position in line"][0]
    assert (top.kind, top.unit) == ("h", 2) and top.score > 0.99
    for name, hits in scan.items():
        f = text_features(text)[name]
        for hit in hits:
            v = tr[hit.kind][0, 0, :, hit.unit].numpy()
            want = 0.0 if v.std() == 0 else np.corrcoef(v, f)[0, 1]
            assert hit.score == pytest.approx(want, abs=1e-12)
        assert [abs(h.score) for h in hits] == sorted((abs(h.score) for h in hits), reverse=True)
    assert not [h for h in scan["in quotes"] if h.unit == 3 and h.kind == "h" and h.score]


def test_unit_search_ranks_by_cohens_d():
    rng = np.random.default_rng(1)
    T = 40
    h = rng.normal(size=(T, 5)) * 0.3
    h[10:20, 4] += 2.0  # unit 4 is on exactly in the selection
    h[:, 1] = 0.9  # constant: d = 0 thanks to the floor, not 0/0
    tr = _toy_trace({"h": h}, "x" * T)
    hits = unit_search(tr, (10, 20), top=5)
    assert (hits[0].kind, hits[0].unit) == ("h", 4)
    inside, outside = h[10:20], np.concatenate([h[:10], h[20:]])
    for hit in hits:
        a, b = inside[:, hit.unit], outside[:, hit.unit]
        d = (a.mean() - b.mean()) / np.sqrt((a.var() + b.var()) / 2 + analysis.SEARCH_EPS ** 2)
        assert hit.score == pytest.approx(d, rel=1e-12, abs=1e-12)
    mask = np.zeros(T, bool)
    mask[10:20] = True
    assert unit_search(tr, mask, top=5) == hits
    for bad in [(5, 5), (0, T), (-1, 3), (3, T + 1)]:
        with pytest.raises(ValueError):
            unit_search(tr, bad)


def test_saturation_counts_steps():
    f = np.array([[0.05, 0.5], [0.95, 0.5], [0.99, 0.01], [0.5, 0.5]])
    tr = _toy_trace({"h": np.zeros((4, 2)), "f": f}, "abcd")
    (s,) = saturation(tr)
    assert s["kind"] == "f"
    assert s["left"].tolist() == [0.25, 0.25] and s["right"].tolist() == [0.5, 0.0]


def test_colours():
    assert analysis.colour(0.0, "diverging", 1.0) == (255, 255, 255)
    assert analysis.colour(1.0, "diverging", 1.0) == analysis.POSITIVE
    assert analysis.colour(-3.0, "diverging", 2.0) == analysis.NEGATIVE  # clipped at -scale
    assert analysis.colour(1.0, "gate", 1.0) == analysis.GATE
    assert analysis.colour(0.5, "gate", 1.0) == tuple(
        int(np.floor(255 + 0.5 * (e - 255) + 0.5)) for e in analysis.GATE)
    style, scale = analysis.scale("c", np.array([[0.2, -3.0], [0.5, 1.0]]))
    assert style == "diverging" and scale.tolist() == [1.0, 3.0]


def test_quantized_values_within_half_a_step():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(300, 6)) * [1, 2, 3, 0.001, 5, 0]
    q, lo, hi = quantize(v)
    assert q.shape == (6, 300) and q.dtype == np.uint8
    err = np.abs(dequantize(q, lo, hi) - v).max(0)
    assert np.all(err <= (hi - lo) / 510 + 1e-12)


def test_bundle_carries_the_trace(tiny_run, corpus_text):
    model, vocab, _ = load_model(tiny_run)
    text = corpus_text[:500]
    tr = trace(model, text, vocab)
    b = make_bundle(tr, "tiny")
    assert b["text"] == text and b["model"]["vocab"] == list(vocab.chars)
    assert [(s["kind"], s["layer"], s["direction"]) for s in b["slots"]] == analysis.slots(tr)
    assert len(b["slots"]) == 6 * 2
    for s in b["slots"][:3]:
        q = np.frombuffer(base64.b64decode(s["q"]), np.uint8).reshape(s["units"], len(text))
        v = tr[s["kind"]][s["layer"], s["direction"]].double().numpy()
        np.testing.assert_allclose(dequantize(q, np.array(s["lo"]), np.array(s["hi"])), v,
                                   atol=(v.max() - v.min()) / 500)
    P = b["predict"]
    for t in (0, 77, 499):
        top = tr.top_predictions(t, P["k"])
        assert [vocab.chars[i] for i in P["ids"][t * P["k"]:(t + 1) * P["k"]]] == [c for c, _ in top]
        assert P["p"][t * P["k"]] == pytest.approx(top[0][1], abs=1e-4)
    logp = torch.log_softmax(tr.logits.double(), -1)[:-1].gather(1, tr.ids[1:, None])
    assert P["loss"] == pytest.approx(float(-logp.mean()), rel=1e-6)
    scan = feature_scan(tr)
    by_name = {f["name"]: f for f in b["features"]}
    first = scan["position in line"][0]
    got = by_name["position in line"]["hits"][0]
    assert b["slots"][got["slot"]]["kind"] == first.kind and got["unit"] == first.unit
    assert len(b["saturation"]) == 3 * 2  # i, f, o in two layers


def test_check_text_messages():
    vocab = type("V", (), {"unknown": lambda self, t: sorted(set(t) - set("ab")),
                           "__len__": lambda self: 2})()
    check_text("abba", vocab)
    with pytest.raises(ValueError, match="is empty"):
        check_text("", vocab)
    with pytest.raises(ValueError, match=f"at most {MAX_CHARS:,}"):
        check_text("a" * (MAX_CHARS + 1), vocab)
    with pytest.raises(ValueError, match="2 character.s. outside the model's vocabulary of 2: 'c', 'é'"):
        check_text("abcé", vocab)
