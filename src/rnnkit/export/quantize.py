"""int8: dynamic quantization of an exported ONNX model, by onnxruntime's own quantizer.

Dynamic quantization (weights int8 once, activations quantized per call from their observed range)
needs no calibration data, and onnxruntime's quantizer knows its LSTM operator: it rewrites
``LSTM`` to ``DynamicQuantizeLSTM`` and ``MatMul`` / ``Gather`` to their integer forms. GRU and
RNN operators and ``Scan`` bodies stay float32 (onnxruntime has no integer kernels for them).
``benchmarks/export.py`` measures size, speed and the change in validation loss.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rnnkit.export.api import ExportError, check_out_path


def quantize_int8(src, dst) -> Path:
    """Write ``dst``: the ONNX model ``src`` with int8 weights (signed, per tensor)."""
    src = Path(src)
    if not src.is_file():
        raise ExportError(f"no such ONNX file: {src}")
    dst = check_out_path(dst)
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    temps = [_temp(dst) for _ in range(2)]
    try:
        # the quantizer's recommended pre-processing: shape inference, so that it knows every
        # tensor's type (its graph optimisation is left to the runtime)
        quant_pre_process(src, temps[0], skip_optimization=True)
        quantize_dynamic(temps[0], temps[1], weight_type=QuantType.QInt8)
        os.chmod(temps[1], 0o666 & ~_umask())
        os.replace(temps[1], dst)  # atomic: a reader sees the old file or the whole new one
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return dst


def _temp(dst: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    return tmp


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask
