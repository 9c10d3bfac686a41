"""Helpers for the export tests: export a model both ways, run the files, compare with eager.

The oracle is the model's own eager call (``Program.eager``: the layer's forward, or ``step``).
Exports trace at (T, B) = (4, 3); the checks run at other lengths and batch sizes (``SIZES``).
Closeness: float32, max |exported - eager| <= 1e-5 * max |eager| for every output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch

from rnnkit.export import program_for, to_onnx, to_pt2

#: (T, B) at which exported files are checked; the exports trace at (4, 3)
SIZES = [(1, 1), (6, 2), (11, 5)]
EXPORT_T, EXPORT_B = 4, 3
RTOL = 1e-5



def session(path, log_level: int = 3) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = log_level  # 3: the optional inputs' defaults are meant, no warning
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(sess: ort.InferenceSession, inputs: dict) -> list[np.ndarray]:
    return sess.run(None, {k: v.numpy() for k, v in inputs.items() if v is not None})


def assert_close(got, ref, what: str = "") -> None:
    """float32: max |got - ref| <= RTOL * max |ref| (ref from eager), shapes equal."""
    assert len(got) == len(ref), f"{what}: {len(got)} outputs, expected {len(ref)}"
    for k, (g, r) in enumerate(zip(got, ref)):
        g = torch.as_tensor(np.asarray(g.detach() if isinstance(g, torch.Tensor) else g))
        r = r.detach()
        assert tuple(g.shape) == tuple(r.shape), f"{what} output {k}: shape {g.shape} != {r.shape}"
        scale = float(r.abs().max()) if r.numel() else 0.0
        err = float((g - r).abs().max()) if r.numel() else 0.0
        assert err <= RTOL * max(scale, 1e-6), f"{what} output {k}: max error {err:.3g}, scale {scale:.3g}"


@dataclass
class Exported:
    """A model exported both ways at the same example, and how to call each."""

    model: torch.nn.Module
    program: object  # the pt2 program (its eager() is the oracle)
    onnx: ort.InferenceSession
    pt2: torch.nn.Module
    pt2_names: list[str]  # the inputs the pt2 program takes, in order

    def eager(self, inputs: dict):
        with torch.no_grad():
            return self.program.eager(inputs)

    def run_pt2(self, inputs: dict):
        with torch.no_grad():
            return self.pt2(*[inputs[n] for n in self.pt2_names])

    def check(self, inputs: dict, what: str, pt2: bool = True) -> None:
        ref = self.eager(inputs)
        assert_close(run_onnx(self.onnx, inputs), ref, f"onnxruntime {what}")
        if pt2:
            assert_close(self.run_pt2(inputs), ref, f"torch.export {what}")


def export_both(model, folder, example: dict, streaming: bool = False, name: str = "m") -> Exported:
    model.eval()
    onnx_path = to_onnx(model, folder / f"{name}.onnx", example, streaming=streaming)
    pt2_path = to_pt2(model, folder / f"{name}.pt2", example, streaming=streaming)
    program = program_for(model, "pt2", streaming)
    names = [s.name for s in program.slots if example.get(s.name) is not None or s.role == "data"]
    return Exported(model, program, session(onnx_path), torch.export.load(pt2_path).module(), names)
