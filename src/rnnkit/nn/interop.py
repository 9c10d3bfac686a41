"""What torch's own machinery asks of a module, for rnnkit's layers: TorchScript, torch.ao, torch.load.

Some of PyTorch knows torch.nn's recurrent layers by their exact class and nothing else:

* **TorchScript** (``torch.jit.script``) compiles torch.nn's RNN code, which it has annotated for
  itself; rnnkit's forward (``lengths=``, several paths) is plain Python. Before compiling it asks
  each module for ``__prepare_scriptable__()``: an rnnkit layer answers with its **torch.nn
  twin**, the torch.nn module of the same configuration holding the *same* Parameter objects
  (nothing copied: what trains one trains the other), so it computes the same function. A layer
  torch.nn has no form for (layer norm, zoneout, learned initial states, minGRU...) refuses in
  one line and says what works instead.
* **torch.ao.quantization** swaps modules through tables keyed by exact torch.nn classes, and
  left rnnkit's layers in float32 without a word. It tells a module it wants it quantized by
  setting ``module.qconfig``; rnnkit's layers answer that with an error that says how to get
  int8 (`rnnkit.export.to_torch_nn` first, or the exported ONNX file's int8), never
  silence. One case needs a look at torch.ao's own frame: ``quantize_dynamic(model)`` with its
  default choice (torch.nn's LSTM, GRU and cells) gives every module ``qconfig = None`` unless
  its exact class is chosen, so the layer reads the choice torch.ao is applying, and refuses if
  it names the torch.nn class the layer stands in for (``tests/nn/test_nn_interop.py`` holds
  torch.ao to this).
* **torch.load** with ``weights_only=True`` (the default) refuses every class not on its allow
  list, torch.nn's layers included. rnnkit's layers and cells are added to it with
  ``torch.serialization.add_safe_globals`` (`allow_weights_only_load`), which is sound:
  weights_only promises that loading runs no code from the file. Loading one of these classes
  makes it with ``cls.__new__`` and fills it with ``nn.Module.__setstate__`` (a dict update);
  none of them defines ``__new__``, ``__reduce__``, ``__reduce_ex__``, ``__getstate__`` or
  ``__setstate__`` of its own (a test holds them to that), and their state is tensors and plain
  values, each of which must itself be allowed. Not added: ``Recurrent`` (it holds any callables
  and modules, each the user's to allow) and the task models (they hold torch.nn modules, which
  torch itself does not allow by default).
"""

from __future__ import annotations

import copy
import sys

import torch
from torch import nn

#: rnnkit class name -> the torch.nn class it stands in for (TorchScript, torch.ao)
_STANDS_FOR = {
    "RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU,
    "FusedRNN": nn.RNN, "FusedLSTM": nn.LSTM, "FusedGRU": nn.GRU,
    "LayerNormLSTM": nn.LSTM, "LayerNormGRU": nn.GRU,
    "RNNCell": nn.RNNCell, "LSTMCell": nn.LSTMCell, "GRUCell": nn.GRUCell,
}
_LAYERS = ("RNN", "LSTM", "GRU", "FusedRNN", "FusedLSTM", "FusedGRU")


def twin_of(module: nn.Module) -> tuple[nn.Module | None, str]:
    """``(twin, "")``: the torch.nn module computing what ``module`` computes, sharing its
    Parameter objects; or ``(None, why)`` when torch.nn has no such module."""
    name = type(module).__name__
    if not type(module).__module__.startswith("rnnkit.") or name not in _STANDS_FOR:
        return None, f"{name} has no torch.nn counterpart"
    if name.endswith("Cell"):
        return _cell_twin(module), ""
    if name not in _LAYERS:
        return None, "torch.nn has no layer normalisation inside its recurrent layers"
    if module.init_state != "zeros":
        return None, f"torch.nn has no init_state={module.init_state!r} (its initial state is zeros)"
    dropouts = [getattr(module, "recurrent_dropout", 0.0), getattr(module, "weight_dropout", 0.0),
                *getattr(module, "zoneout", ())]
    if any(dropouts):
        return None, "torch.nn has no recurrent dropout, zoneout or DropConnect"
    w = module.weight_ih_l0
    kw = {"num_layers": module.num_layers, "bias": module.bias, "batch_first": module.batch_first,
          "dropout": module.dropout, "bidirectional": module.bidirectional,
          "device": "meta", "dtype": w.dtype}  # meta: no memory, no draw from the RNG
    if module.mode == "LSTM":
        kw["proj_size"] = module.proj_size
    if module.mode.startswith("RNN"):
        kw["nonlinearity"] = module.nonlinearity
    twin = _STANDS_FOR[name](module.input_size, module.hidden_size, **kw)
    for p in module._flat_weights_names:
        setattr(twin, p, getattr(module, p))  # the same Parameter: shared, not copied
    return twin.train(module.training), ""


def _cell_twin(cell: nn.Module) -> nn.Module:
    kw = {"nonlinearity": cell.nonlinearity} if hasattr(cell, "nonlinearity") else {}
    twin = _STANDS_FOR[type(cell).__name__](
        cell.input_size, cell.hidden_size, cell.bias, device="meta", dtype=cell.weight_ih.dtype, **kw
    )
    for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        if getattr(cell, p) is not None:
            setattr(twin, p, getattr(cell, p))
    return twin.train(cell.training)


def to_torch_nn(model: nn.Module, inplace: bool = False) -> nn.Module:
    """``model`` with every rnnkit layer and cell that has a torch.nn twin replaced by its twin
    (the twin itself when ``model`` is one); other modules stay as they are.

    Same parameter names and values, same outputs; then torch.nn-only tools apply, e.g.
    ``torch.ao.quantization.quantize_dynamic(to_torch_nn(model))``. ``inplace=False`` works on a
    deep copy (the result shares nothing with ``model``); ``inplace=True`` changes ``model``,
    whose twins then share the layers' Parameter objects.
    """
    if not inplace:
        model = copy.deepcopy(model)
    twin, _ = twin_of(model)
    if twin is not None:
        return twin
    for name, child in list(model.named_children()):
        replaced = to_torch_nn(child, inplace=True)
        if replaced is not child:
            setattr(model, name, replaced)
    return model


class TorchInterop:
    """Mixin for rnnkit's modules: TorchScript and torch.ao see what the module docstring says."""

    def __prepare_scriptable__(self):
        twin, why = twin_of(self)
        if twin is None:
            raise RuntimeError(
                f"{type(self).__name__}: torch.jit.script compiles torch.nn's own recurrent "
                f"layers only, and {why}; use torch.export.export (rnnkit.export.to_pt2), "
                "rnnkit.export.to_onnx, or torch.jit.trace at a fixed sequence length"
            )
        return twin

    @property
    def qconfig(self):
        try:
            return self.__dict__["_rnnkit_qconfig"]
        except KeyError:
            raise AttributeError("qconfig") from None

    @qconfig.setter
    def qconfig(self, value) -> None:
        if value is not None or ("_rnnkit_qconfig" not in self.__dict__ and _torch_ao_wants(self)):
            _refuse_quantization(self)
        self.__dict__["_rnnkit_qconfig"] = value

    @qconfig.deleter
    def qconfig(self) -> None:
        self.__dict__.pop("_rnnkit_qconfig", None)


def _torch_ao_wants(module) -> bool:
    """Whether ``torch.ao.quantization``'s qconfig propagation is setting ``module.qconfig`` while
    its qconfig_dict chooses the torch.nn class this module stands in for."""
    quantize = sys.modules.get("torch.ao.quantization.quantize")
    helper = getattr(quantize, "_propagate_qconfig_helper", None)
    if helper is None:
        return False
    frame = sys._getframe(1)
    for _ in range(6):  # this function <- the setter <- nn.Module.__setattr__ <- torch.ao's helper
        if frame is None:
            return False
        if frame.f_code is helper.__code__:
            chosen = frame.f_locals.get("qconfig_dict") or {}
            stands_for = _STANDS_FOR.get(type(module).__name__)
            return stands_for is not None and chosen.get(stands_for) is not None
        frame = frame.f_back
    return False


def _refuse_quantization(module) -> None:
    name = type(module).__name__
    twin, why = twin_of(module)
    how = ("convert the model with rnnkit.export.to_torch_nn(model) first (same parameters, same "
           "outputs; torch.ao then quantizes the torch.nn layers)" if twin is not None else
           f"{why}, so torch.ao has no int8 form of it")
    raise RuntimeError(
        f"{name}: torch.ao.quantization swaps modules by their exact torch.nn class and would "
        f"leave this layer in float32: {how}; or quantize the exported ONNX file (rnnkit export "
        f"--int8, rnnkit.export.quantize_int8). To keep it in float32 on purpose, set its "
        "qconfig = None before quantizing"
    )


def allow_weights_only_load(*classes: type) -> None:
    """Let ``torch.load(weights_only=True)`` make these classes (see the module docstring)."""
    torch.serialization.add_safe_globals(list(classes))
