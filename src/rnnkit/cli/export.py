"""``rnnkit export RUN_DIR --format onnx|pt2 [--streaming] [--int8] [--out FILE]``.

Argument parsing only: `rnnkit.export.export_run` does the work. Any run folder works: a
char LM from ``rnnkit train`` or a task model from ``rnnkit task ... --out-dir``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rnnkit.cli import CLIError, user_errors


def _log(message: str) -> None:
    print(f"rnnkit export: {message}", file=sys.stderr, flush=True)


def run_export(args) -> int:
    try:
        from rnnkit.export.runs import default_out, export_run
    except ImportError as err:  # the export extra is not installed
        raise CLIError(f"exporting needs the export extra (pip install 'rnnkit[export]'): {err}",
                       code=1) from None
    if args.int8 and args.format != "onnx":
        raise CLIError(f"--int8 quantizes an ONNX file; got --format {args.format}")
    out = Path(args.out) if args.out else default_out(args.run_dir, args.format, args.streaming)
    int8_out = out.with_name(out.stem + "-int8" + out.suffix)
    with user_errors():
        if args.int8:
            from rnnkit.export.api import check_out_path

            check_out_path(int8_out)  # before any work
        path = export_run(args.run_dir, args.format, out, streaming=args.streaming, log=_log)
        print(f"wrote {path}")
        if args.int8:
            from rnnkit.export.quantize import quantize_int8

            _log("onnxruntime: dynamic int8 quantization")
            print(f"wrote {quantize_int8(path, int8_out)} (int8)")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="write a run's model as ONNX or a torch.export program (.pt2)",
        description="Export the model of a run folder (rnnkit train, rnnkit task --out-dir) with "
                    "dynamic batch and time axes. Default output: RUN_DIR/model.onnx "
                    "(model-step.onnx with --streaming, model.pt2 with --format pt2).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--format", choices=("onnx", "pt2"), default="onnx",
                   help="onnx (default; runs in onnxruntime) or pt2 (torch.export.load)")
    p.add_argument("--streaming", action="store_true",
                   help="one time step (x_t, state) -> (y_t, state), for real-time use")
    p.add_argument("--int8", action="store_true",
                   help="also write an int8 copy, quantized by onnxruntime (ONNX only), "
                        "beside the float32 file as *-int8.onnx")
    p.add_argument("--out", default=None, metavar="FILE", help="output file")
    p.set_defaults(func=run_export)
