"""rnnkit.RNN/LSTM/GRU against torch.nn: outputs, final states and every gradient, both paths.

The grid covers every constructor option (layers, bias, batch_first, dropout in eval mode,
bidirectional, proj_size, nonlinearity) and every input form (unbatched, batched, packed, lengths)
with hx given or defaulted, in float64 (tolerance 1e-10) and float32 (assert_close defaults).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit

T, B, I, H, P = 5, 3, 4, 6, 3

# (name, rnnkit class, torch class, extra constructor kwargs)
MODES = [
    ("rnn_tanh", rnnkit.RNN, torch.nn.RNN, {}),
    ("rnn_relu", rnnkit.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    ("gru", rnnkit.GRU, torch.nn.GRU, {}),
    ("lstm", rnnkit.LSTM, torch.nn.LSTM, {}),
    ("lstm_proj", rnnkit.LSTM, torch.nn.LSTM, {"proj_size": P}),
]
# num_layers, bias, batch_first, bidirectional: the full 2x2x2x2 product
LAYOUTS = list(itertools.product([1, 2], [True, False], [False, True], [False, True]))
INPUTS = ["unbatched", "batched", "packed", "lengths"]


def tolerance(dtype):
    return {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {}


def make_pair(mode, layout, dtype, seed=0):
    _, ours_cls, torch_cls, extra = mode
    num_layers, bias, batch_first, bidirectional = layout
    kw = dict(num_layers=num_layers, bias=bias, batch_first=batch_first,
              bidirectional=bidirectional, dtype=dtype, **extra)
    if num_layers > 1:
        kw["dropout"] = 0.25  # checked in eval mode here; training mode has its own tests
    torch.manual_seed(seed)
    ref = torch_cls(I, H, **kw)
    ours = ours_cls(I, H, **kw)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def state_shapes(mod, batch):
    rows = mod.num_layers * (2 if mod.bidirectional else 1)
    out = mod.proj_size or mod.hidden_size
    shapes = [(rows, batch, out)] + ([(rows, batch, mod.hidden_size)] if isinstance(mod, torch.nn.LSTM) else [])
    return shapes if batch else [(s[0], s[2]) for s in shapes]


def run_case(ours, ref, kind, give_hx, dtype, seed=1):
    """Run both modules on the same data; return pairs of tensors that must be equal."""
    g = torch.Generator().manual_seed(seed)
    bf = ref.batch_first
    lengths = torch.tensor([T, 2, 4])
    if kind == "unbatched":
        x = torch.randn(T, I, generator=g, dtype=dtype)
    else:
        x = torch.randn(*((B, T) if bf else (T, B)), I, generator=g, dtype=dtype)
    x.requires_grad_(True)
    hx = None
    if give_hx:
        hx = [torch.randn(s, generator=g, dtype=dtype, requires_grad=True)
              for s in state_shapes(ref, None if kind == "unbatched" else B)]
    arg = None if hx is None else (tuple(hx) if isinstance(ref, torch.nn.LSTM) else hx[0])

    def packed():
        return pack_padded_sequence(x, lengths, batch_first=bf, enforce_sorted=False)

    if kind == "packed":
        out_r, st_r = ref(packed(), arg)
        out_o, st_o = ours(packed(), arg)
        assert torch.equal(out_o.batch_sizes, out_r.batch_sizes)
        assert torch.equal(out_o.sorted_indices, out_r.sorted_indices)
        out_r, out_o = out_r.data, out_o.data
    elif kind == "lengths":
        out_r, st_r = ref(packed(), arg)
        out_r, _ = pad_packed_sequence(out_r, batch_first=bf, total_length=T)
        out_o, st_o = ours(x, arg, lengths=lengths)
    else:
        out_r, st_r = ref(x, arg)
        out_o, st_o = ours(x, arg)
    st_r = st_r if isinstance(st_r, tuple) else (st_r,)
    st_o = st_o if isinstance(st_o, tuple) else (st_o,)

    # one scalar that touches every output and state, with random weights
    def loss(out, states):
        gen = torch.Generator().manual_seed(7)
        total = (out * torch.randn(out.shape, generator=gen, dtype=dtype)).sum()
        for s in states:
            total = total + (s * torch.randn(s.shape, generator=gen, dtype=dtype)).sum()
        return total

    leaves = [x] + (hx or [])
    grads_r = torch.autograd.grad(loss(out_r, st_r), leaves + list(ref.parameters()))
    grads_o = torch.autograd.grad(loss(out_o, st_o), leaves + list(ours.parameters()))
    pairs = [("output", out_o, out_r)]
    pairs += [(f"state{k}", a, b) for k, (a, b) in enumerate(zip(st_o, st_r))]
    names = ["d_input"] + [f"d_hx{k}" for k in range(len(hx or []))]
    names += [f"d_{n}" for n, _ in ref.named_parameters()]
    pairs += list(zip(names, grads_o, grads_r))
    return pairs


def assert_pairs(pairs, dtype):
    for name, a, b in pairs:
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, **tolerance(dtype), msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("backend", ["native", "loop"])
@pytest.mark.parametrize("mode", MODES, ids=[m[0] for m in MODES])
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: "L{}-bias{}-bf{}-bi{}".format(*lay))
def test_parity_float64_all_inputs(mode, layout, backend):
    ours, ref = make_pair(mode, layout, torch.float64)
    ours.backend = backend
    ours.eval(), ref.eval()
    for kind, give_hx in itertools.product(INPUTS, [False, True]):
        assert_pairs(run_case(ours, ref, kind, give_hx, torch.float64), torch.float64)


@pytest.mark.parametrize("backend", ["native", "loop"])
@pytest.mark.parametrize("mode", MODES, ids=[m[0] for m in MODES])
@pytest.mark.parametrize("kind", INPUTS)
def test_parity_float32(mode, kind, backend):
    for layout in [(1, True, False, False), (2, True, True, True), (2, False, False, True)]:
        ours, ref = make_pair(mode, layout, torch.float32)
        ours.backend = backend
        ours.eval(), ref.eval()
        for give_hx in (False, True):
            assert_pairs(run_case(ours, ref, kind, give_hx, torch.float32), torch.float32)


@pytest.mark.parametrize("mode", MODES, ids=[m[0] for m in MODES])
def test_state_dict_round_trip_and_init(mode):
    """Same seed, same weights; state dicts load both ways with identical keys and shapes."""
    _, ours_cls, torch_cls, extra = mode
    kw = dict(num_layers=2, bidirectional=True, **extra)
    torch.manual_seed(3)
    ref = torch_cls(I, H, **kw)
    torch.manual_seed(3)
    ours = ours_cls(I, H, **kw)
    sd_r, sd_o = ref.state_dict(), ours.state_dict()
    assert list(sd_r) == list(sd_o)
    for k in sd_r:
        assert torch.equal(sd_r[k], sd_o[k]), k
    # and the reverse direction: a torch.nn module accepts ours
    fresh = torch_cls(I, H, **kw)
    fresh.load_state_dict(ours.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), ours.parameters()))
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]


@pytest.mark.parametrize("mode", MODES, ids=[m[0] for m in MODES])
def test_dropout_training_native_matches_torch(mode):
    """Native path in training mode consumes the RNG exactly as torch.nn does."""
    ours, ref = make_pair(mode, (3, True, False, True), torch.float64)
    ours.backend = "native"
    x = torch.randn(T, B, I, dtype=torch.float64)
    torch.manual_seed(11)
    out_r, _ = ref(x)
    torch.manual_seed(11)
    out_o, _ = ours(x)
    torch.testing.assert_close(out_o, out_r, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", MODES, ids=[m[0] for m in MODES])
def test_dropout_training_loop_matches_layer_by_layer(mode):
    """Loop path: dropout on each layer's output except the last, drawn in layer order."""
    name, _, torch_cls, extra = mode
    ours, ref = make_pair(mode, (2, True, False, True), torch.float64)
    ours.backend = "loop"
    ours.train()
    x = torch.randn(T, B, I, dtype=torch.float64)
    # oracle: two one-layer torch.nn modules with dropout between them
    layers = []
    for layer in range(2):
        in_size = I if layer == 0 else 2 * (ref.proj_size or H)
        m = torch_cls(in_size, H, bidirectional=True, dtype=torch.float64, **extra)
        m.load_state_dict({k.replace(f"_l{layer}", "_l0"): v for k, v in ref.state_dict().items()
                           if f"_l{layer}" in k})
        layers.append(m)
    torch.manual_seed(5)
    out_o, _ = ours(x)
    torch.manual_seed(5)
    mid, _ = layers[0](x)
    out_r, _ = layers[1](torch.nn.functional.dropout(mid, 0.25, training=True))
    torch.testing.assert_close(out_o, out_r, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cls", [rnnkit.RNN, rnnkit.GRU, rnnkit.LSTM])
@pytest.mark.parametrize("backend", ["native", "loop"])
def test_learned_initial_state(cls, backend):
    """Learned h0 (and c0) are parameters that get gradients; the output equals passing them as hx."""
    torch.manual_seed(0)
    m = cls(I, H, num_layers=2, bidirectional=True, init_state="learned", backend=backend,
            dtype=torch.float64)
    names = [n for n, _ in m.named_parameters()]
    assert "h0" in names and (("c0" in names) == (cls is rnnkit.LSTM))
    with torch.no_grad():
        for p in (m.h0, getattr(m, "c0", None)):
            if p is not None:
                p.normal_()
    x = torch.randn(T, B, I, dtype=torch.float64)
    out, _ = m(x)
    states = [m.h0] + ([m.c0] if cls is rnnkit.LSTM else [])
    hx = [s.detach().unsqueeze(1).expand(-1, B, -1).contiguous() for s in states]
    out_ref, _ = m(x, tuple(hx) if cls is rnnkit.LSTM else hx[0])
    torch.testing.assert_close(out, out_ref, rtol=1e-12, atol=1e-12)
    out.sum().backward()
    assert m.h0.grad is not None and m.h0.grad.abs().sum() > 0


@pytest.mark.parametrize("cls", [rnnkit.RNN, rnnkit.GRU, rnnkit.LSTM])
def test_random_initial_state(cls):
    """Fresh noise on every call in training; zeros (torch.nn's default) in eval."""
    torch.manual_seed(0)
    m = cls(I, H, init_state="random")
    x = torch.randn(T, B, I)
    a, _ = m(x)
    b, _ = m(x)
    assert not torch.allclose(a, b)
    m.eval()
    ref = type(m)(I, H)
    ref.load_state_dict(m.state_dict())
    torch.testing.assert_close(m(x)[0], ref(x)[0])


def test_auto_uses_native_and_loop_differs_only_by_rounding():
    torch.manual_seed(0)
    m = rnnkit.LSTM(I, H, num_layers=2)
    ref = torch.nn.LSTM(I, H, num_layers=2)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(T, B, I)
    assert torch.equal(m(x)[0], ref(x)[0])  # auto == native == torch.nn, bit for bit


def test_lengths_on_any_device_and_as_list():
    torch.manual_seed(0)
    m = rnnkit.GRU(I, H, backend="loop", dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    a, ha = m(x, lengths=torch.tensor([5, 2, 4]))
    b, hb = m(x, lengths=[5, 2, 4])
    assert torch.equal(a, b) and torch.equal(ha, hb)
    assert torch.all(a[2:, 1] == 0) and torch.all(a[4:, 2] == 0)
