"""What torch's own machinery does with rnnkit's layers (rnnkit.nn.interop, rnnkit.nn.paths).

TorchScript, torch.ao's dynamic quantization, torch.load(weights_only=True), repr, the
TorchScript-based ONNX exporter and torch.jit.trace. Oracles: torch.nn (the same calls on its
layers), the eager module, onnxruntime.
"""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.export import to_torch_nn

# These tests use torch's deprecated tools on purpose (torch.ao, jit.trace, the TorchScript ONNX
# exporter): their deprecation notices, and the tracer's note on Python booleans, are torch's.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean"),
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor.*deprecated"),
]

I, H = 3, 4


class Head(nn.Module):
    """A model holding a recurrent layer: what users script, quantize, save and export."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        out = (getattr(rnn, "proj_size", 0) or rnn.hidden_size) * (2 if rnn.bidirectional else 1)
        self.rnn, self.head = rnn, nn.Linear(out, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out)


def x_of(T, B=2, seed=0):
    return torch.randn(T, B, I, generator=torch.Generator().manual_seed(seed))


SCRIPTABLE = [
    (rnnkit.LSTM, {"num_layers": 2, "proj_size": 2}),
    (rnnkit.GRU, {"bidirectional": True}),
    (rnnkit.RNN, {"nonlinearity": "relu", "bias": False}),
    (rnnkit.FusedLSTM, {}),
    (rnnkit.FusedGRU, {"batch_first": False}),
]


@pytest.mark.parametrize("cls,kw", SCRIPTABLE, ids=[c.__name__ for c, _ in SCRIPTABLE])
def test_script_runs_the_torch_nn_twin(cls, kw):
    torch.manual_seed(0)
    model = Head(cls(I, H, **kw)).eval()
    scripted = torch.jit.script(model)
    assert scripted.state_dict().keys() == model.state_dict().keys()
    for T in (5, 9):
        torch.testing.assert_close(scripted(x_of(T)), model(x_of(T)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cell", [rnnkit.RNNCell, rnnkit.LSTMCell, rnnkit.GRUCell])
def test_script_cells(cell):
    torch.manual_seed(0)
    model = cell(I, H)
    x = x_of(1)[0]
    want, got = model(x), torch.jit.script(model)(x)
    for w, g in zip(torch.utils._pytree.tree_leaves(want), torch.utils._pytree.tree_leaves(got)):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("layer", [
    lambda: rnnkit.LayerNormLSTM(I, H),
    lambda: rnnkit.LSTM(I, H, init_state="learned"),
    lambda: rnnkit.FusedLSTM(I, H, zoneout=0.1),
    lambda: rnnkit.MinGRU(I, H),
], ids=["layernorm", "learned-state", "zoneout", "mingru"])
def test_script_refuses_what_torch_nn_cannot_hold(layer):
    with pytest.raises(RuntimeError, match="torch.jit.script compiles torch.nn's own") as info:
        torch.jit.script(Head(layer()) if hasattr(layer(), "bidirectional") else layer())
    assert "\n" not in str(info.value)


def test_quantize_dynamic_refuses_to_leave_a_layer_in_float():
    model = Head(rnnkit.LSTM(I, H)).eval()
    with pytest.raises(RuntimeError, match="to_torch_nn"):
        torch.ao.quantization.quantize_dynamic(model)
    with pytest.raises(RuntimeError, match="to_torch_nn"):  # asked for by its own class
        torch.ao.quantization.quantize_dynamic(model, {rnnkit.LSTM})
    with pytest.raises(RuntimeError, match="no int8 form"):
        torch.ao.quantization.quantize_dynamic(Head(rnnkit.LayerNormLSTM(I, H)), {rnnkit.LayerNormLSTM})


def test_quantize_dynamic_of_the_twin_quantizes():
    torch.manual_seed(0)
    model = Head(rnnkit.GRU(I, H, num_layers=2)).eval()
    q = torch.ao.quantization.quantize_dynamic(to_torch_nn(model))
    assert isinstance(q.rnn, torch.ao.nn.quantized.dynamic.GRU)
    assert type(model.rnn) is rnnkit.GRU  # to_torch_nn worked on a copy
    x = x_of(7)
    torch.testing.assert_close(q(x), model(x), rtol=0, atol=0.05)  # int8 weights


def test_quantize_dynamic_of_other_modules_leaves_the_layer_alone():
    """Not chosen (only nn.Linear asked for): nothing to refuse, the layer stays float as asked."""
    q = torch.ao.quantization.quantize_dynamic(Head(rnnkit.LSTM(I, H)).eval(), {nn.Linear})
    assert type(q.rnn) is rnnkit.LSTM
    assert isinstance(q.head, torch.ao.nn.quantized.dynamic.Linear)


LOADABLE = [
    lambda: rnnkit.LSTM(I, H, proj_size=2, bidirectional=True),
    lambda: rnnkit.GRU(I, H, init_state="learned"),
    lambda: rnnkit.RNN(I, H, nonlinearity="relu"),
    lambda: rnnkit.FusedLSTM(I, H, zoneout=0.1),
    lambda: rnnkit.LayerNormGRU(I, H),
    lambda: rnnkit.MinGRU(I, H),
    lambda: rnnkit.Elman(I, H, 2),
]


@pytest.mark.parametrize("build", LOADABLE, ids=range(len(LOADABLE)))
def test_whole_model_torch_load_with_weights_only(build):
    torch.manual_seed(0)
    model = build().eval()
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)  # weights_only=True by default
    assert type(loaded) is type(model)
    x = x_of(5)
    for w, g in zip(torch.utils._pytree.tree_leaves(model(x)),
                    torch.utils._pytree.tree_leaves(loaded(x))):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_allowed_classes_run_no_code_of_their_own_when_loaded():
    """The soundness argument of rnnkit.nn.interop: no class on the allow list defines how it
    is pickled or unpickled; nn.Module's own __setstate__ fills it."""
    hooks = ("__new__", "__reduce__", "__reduce_ex__", "__getstate__", "__setstate__")
    allowed = [c for c in torch.serialization.get_safe_globals()
               if isinstance(c, type) and c.__module__.startswith("rnnkit.")]
    assert {c.__name__ for c in allowed} >= {"RNN", "LSTM", "GRU", "LSTMCell", "MinGRU", "Elman"}
    for cls in allowed:
        for base in cls.__mro__:
            if base.__module__.startswith("rnnkit."):
                assert not set(hooks) & set(vars(base)), f"{base.__name__} pickles itself"


@pytest.mark.parametrize("kw", [
    {"nonlinearity": "relu"}, {"num_layers": 2, "bias": False, "batch_first": True},
    {"dropout": 0.5, "num_layers": 2, "bidirectional": True},
    {"num_layers": 3, "bias": False, "batch_first": True, "dropout": 0.25, "bidirectional": True},
])
@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_repr_equals_torch_nn(name, kw):
    if "nonlinearity" in kw and name != "RNN":
        kw = {}
    assert repr(getattr(rnnkit, name)(2, 3, **kw)) == repr(getattr(nn, name)(2, 3, **kw))
    if name == "LSTM":
        assert repr(rnnkit.LSTM(2, 3, proj_size=1, **kw)) == repr(nn.LSTM(2, 3, proj_size=1, **kw))


def test_legacy_onnx_exporter_runs_the_native_layer(tmp_path):
    """torch.onnx.export(dynamo=False) of a model holding rnnkit.LSTM, and of the layer itself
    (its arguments go in by position): ONNX's LSTM, right at a length it was not traced at."""
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    for model in (Head(rnnkit.LSTM(I, H)).eval(), rnnkit.GRU(I, H).eval()):
        path = tmp_path / "legacy.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's own deprecation notes
            torch.onnx.export(model, (x_of(5),), str(path), dynamo=False, input_names=["x"],
                              dynamic_axes={"x": {0: "T", 1: "B"}})
        session = ort.InferenceSession(str(path))
        assert [i.name for i in session.get_inputs()] == ["x"]
        x = x_of(9, B=3, seed=1)
        want = model(x)
        want = want if isinstance(want, torch.Tensor) else want[0]
        got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
        torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-6)


def test_legacy_onnx_exporter_refuses_a_python_time_loop(tmp_path):
    """FusedLSTM (no PyTorch kernel) would be unrolled into the traced T: refused, no file."""
    path = tmp_path / "fused.onnx"
    with pytest.raises(RuntimeError, match="rnnkit.export.to_onnx"):
        torch.onnx.export(Head(rnnkit.FusedLSTM(I, H)).eval(), (x_of(5),), str(path),
                          dynamo=False)
    assert not path.exists()


def test_jit_trace_of_the_loop_warns_and_native_trace_holds_any_length():
    torch.manual_seed(0)
    loop = rnnkit.LSTM(I, H, backend="loop")
    with pytest.warns(torch.jit.TracerWarning, match="exactly the traced number of steps"):
        torch.jit.trace(loop, x_of(5), check_trace=False)
    native = rnnkit.LSTM(I, H)
    traced = torch.jit.trace(native, x_of(5))
    for T in (2, 9):
        torch.testing.assert_close(traced(x_of(T))[0], native(x_of(T))[0])
