"""Deployment: rnnkit layers and models as ONNX files and torch.export programs.

    from rnnkit.export import to_onnx, to_pt2
    to_onnx(model.eval(), "model.onnx")                  # dynamic batch and time; ONNX's own LSTM
    to_onnx(model.eval(), "step.onnx", streaming=True)   # one step: (x_t, state) -> (y_t, state)
    to_pt2(model.eval(), "model.pt2")                    # torch.export.load("model.pt2").module()

Modules: scan (the traceable time loop), recurrence (each layer's forward as a function of its
parameters), onnx_ops (ONNX's RNN / LSTM / GRU operators), programs and models (the exportable
wrappers), api and onnx_file (the writers), quantize (int8), runs (run folders), ort_sample (the
char LM sampler on onnxruntime and NumPy alone).

Names load lazily: ``rnnkit.export.ort_sample`` imports neither torch nor this package's torch
modules, so it runs where torch is not installed.
"""

from importlib import import_module

_LAZY = {
    "to_onnx": "onnx_file",
    "to_pt2": "api",
    "ExportError": "api",
    "program_for": "api",
    "quantize_int8": "quantize",
    "export_run": "runs",
    "load_run": "runs",
    "to_torch_nn": "rnnkit.nn.interop",  # rnnkit layers -> their torch.nn twins (TorchScript, torch.ao)
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rnnkit.export' has no attribute {name!r}")
    value = getattr(import_module(module if "." in module else f"rnnkit.export.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
