"""Pictures from the command line: ``rnnkit diagram``, ``rnnkit gradflow``, ``rnnkit heatmap``,
``rnnkit curves``. Each writes a PNG (or SVG) and prints its path; ``diagram`` also prints Mermaid."""

from __future__ import annotations

from pathlib import Path

from rnnkit.cli import CLIError, user_errors

CELL_CHOICES = ("rnn", "lstm", "gru")


def _out_path(path: str, default: str) -> Path:
    out = Path(path or default)
    if out.suffix.lower() not in (".png", ".svg"):
        raise CLIError(f"--out must end in .png or .svg, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


# ---- diagram --------------------------------------------------------------------------------------

def model_shape_from_run(run_dir: str) -> dict:
    """cell, num_layers, bidirectional, sizes from a run folder's config.json (any rnnkit run)."""
    from rnnkit.cli.tasks import read_run_json

    path = Path(run_dir) / "config.json"
    cfg = read_run_json(run_dir)
    flat = {**cfg, **cfg.get("model", {})} if isinstance(cfg.get("model"), dict) else dict(cfg)
    cell = str(flat.get("cell", flat.get("mode", flat.get("rnn_type", "")))).lower()
    cell = {"rnn_tanh": "rnn", "rnn_relu": "rnn", "elman": "rnn"}.get(cell, cell)
    if cell not in CELL_CHOICES:
        raise CLIError(f"{path}: expected 'cell' to be one of {', '.join(CELL_CHOICES)}, got {cell or 'nothing'!r}")
    input_size = flat.get("input_size") or flat.get("embed_size") or flat.get("vocab_size")  # 0: one-hot
    if input_size is None and flat.get("task") in ("adding", "copy"):
        input_size = 2 if flat["task"] == "adding" else 10
    return {
        "cell": cell,
        "num_layers": int(flat.get("num_layers", flat.get("layers", 1))),
        "bidirectional": bool(flat.get("bidirectional", False)),
        "hidden_size": flat.get("hidden_size"),
        "input_size": input_size,
    }


def run_diagram(args) -> int:
    from rnnkit.viz.diagram import save_diagram, to_mermaid, unrolled_graph

    shape = {"cell": args.cell, "num_layers": args.num_layers, "bidirectional": args.bidirectional,
             "hidden_size": args.hidden_size, "input_size": args.input_size}
    if args.run:
        shape.update(model_shape_from_run(args.run))
    with user_errors():
        g = unrolled_graph(steps=args.steps, **shape)
    print(to_mermaid(g), end="")
    if args.out:
        print(f"%% image: {save_diagram(g, _out_path(args.out, 'diagram.png'))}")
    return 0


# ---- models from run folders ----------------------------------------------------------------------

DEFAULT_TEXT = "To be, or not to be, that is the question:"


def load_run(run_dir: str):
    """("memory", model, config) for a memory-task run, ("charlm", model, vocab) for a char-LM run."""
    from rnnkit.cli.tasks import load_memory_run, read_run_json

    cfg = read_run_json(run_dir)
    if cfg.get("format") == "rnnkit-charlm-run":
        from rnnkit.train.checkpoint import CheckpointError, load_model
        from rnnkit.train.config import ConfigError

        with user_errors(CheckpointError, ConfigError):
            model, vocab, _ = load_model(run_dir)
        return "charlm", model, vocab
    model, config = load_memory_run(run_dir, cfg)
    return "memory", model, config


def _start(args, default_name: str) -> Path:
    """The common start of gradflow and heatmap: torch's thread count, then the image's path."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return _out_path(args.out, default_name)


def _char_ids(vocab, text: str):
    """(T, 1) ids of ``text``, keeping only characters the model knows."""
    import torch

    known = "".join(c for c in text if not vocab.unknown(c))
    if len(known) < 2:
        raise CLIError(f"--text needs at least 2 characters from the model's vocabulary, got {text!r}")
    return known, torch.as_tensor(vocab.encode(known), dtype=torch.long)[:, None]  # (T, 1)


# ---- gradient flow --------------------------------------------------------------------------------

def run_gradflow(args) -> int:
    import torch

    from rnnkit.tasks.memory import MemoryTaskConfig, memory_batch, memory_loss
    from rnnkit.viz.gradflow import hidden_gradient_norms, plot_gradient_norms
    from rnnkit.viz.memory_gradflow import memory_gradient_flow, plot_memory_gradient_flow

    out = _start(args, "gradflow.png")
    if args.run:
        kind, model, info = load_run(args.run)
        if kind == "memory":
            config = info
            x, y = memory_batch(config, 128, torch.Generator().manual_seed(20_000 + config.seed))
            norms = hidden_gradient_norms(model, lambda m: memory_loss(m, x, y, config.task))  # (L, D, T)
            title = f"{config.task} T={config.length}, trained {config.cell.upper()} ({Path(args.run).name})"
        else:  # char LM: the loss of predicting the text's last character from the ones before it
            text, ids = _char_ids(info, args.text)
            norms = hidden_gradient_norms(
                model, lambda m: torch.nn.functional.cross_entropy(m(ids[:-1])[0][-1], ids[-1]))
            title = f"char LM {model.cell.upper()} ({Path(args.run).name}): loss at the last of {len(text)} chars"
        curves = {f"layer {layer}": norms[layer, 0] for layer in range(norms.size(0))}
        fig = plot_gradient_norms(curves, title=title + ": ‖∂L/∂hₜ‖")
        _print_norms(curves)
    else:
        cells = tuple(c.strip().lower() for c in args.cells.split(","))
        bad = [c for c in cells if c not in CELL_CHOICES]
        if bad:
            raise CLIError(f"--cells must list cells from {', '.join(CELL_CHOICES)}, got {', '.join(bad)}")
        with user_errors():
            config = MemoryTaskConfig(task=args.task, length=args.length, steps=args.train_steps,
                                      lr=args.lr, hidden_size=args.hidden_size, seed=args.seed)
        flows = memory_gradient_flow(config, cells)
        fig = plot_memory_gradient_flow(flows, config)
        for cell, flow in flows.items():
            _print_norms({f"{cell} before": flow["before"], f"{cell} after": flow["after"]})
    fig.savefig(out)
    print(f"image: {out}")
    return 0


def _print_norms(curves) -> None:
    for name, v in curves.items():
        ratio = float(v[0]) / max(float(v[-1]), 1e-30)
        print(f"  {name:>14}: ‖∂L/∂h_t‖ at t=0 {float(v[0]):.3e}, at t=T-1 {float(v[-1]):.3e}, ratio {ratio:.2e}")


# ---- heat map -------------------------------------------------------------------------------------

def run_heatmap(args) -> int:
    import torch

    from rnnkit.tasks.memory import MemoryTaskConfig, memory_batch, train_memory_task
    from rnnkit.viz.heatmap import hidden_states, plot_hidden_states

    out = _start(args, "heatmap.png")
    if args.run:
        kind, model, info = load_run(args.run)
        if kind == "charlm":
            return _charlm_heatmap(args, model, info, out)
        config = info
        trained = f"trained ({Path(args.run).name})"
    else:
        with user_errors():
            config = MemoryTaskConfig(task=args.task, cell=args.cell, length=args.length, lr=args.lr,
                                      steps=args.train_steps, hidden_size=args.hidden_size, seed=args.seed)
        model, result = train_memory_task(config)
        metric = "MSE" if config.task == "adding" else "CE"
        trained = f"after {config.steps} steps, {metric} {result.metric:.3g} vs baseline {result.baseline:.3g}"
    x, y = memory_batch(config, 1, torch.Generator().manual_seed(30_000 + args.seed))
    model.eval()
    with user_errors():
        states = hidden_states(model, lambda m: m(x), layer=args.layer, cell_state=args.cell_state)[0]  # (T, H)
    if config.task == "adding":
        marks = torch.nonzero(x[0, :, 1]).flatten().tolist()
        note = f"markers at t={marks}, target {float(y[0]):.3f}"
    else:
        K = config.num_symbols
        marks = [K - 1, K + config.length - 1]  # last symbol read, delimiter
        note = "dashed: end of the symbols, the delimiter"
    which = "c_t" if args.cell_state else "h_t"
    fig = plot_hidden_states(
        states, title=f"{config.cell.upper()} {which} on one {config.task} sequence (T={config.length}), "
                      f"{trained}\n{note}", marks=marks)
    fig.savefig(out)
    print(f"image: {out}")
    return 0


def _charlm_heatmap(args, model, vocab, out: Path) -> int:
    from rnnkit.viz.heatmap import hidden_states, plot_hidden_states

    text, ids = _char_ids(vocab, args.text)
    with user_errors():
        states = hidden_states(model, lambda m: m(ids), layer=args.layer, cell_state=args.cell_state)[0]
    which = "c_t" if args.cell_state else "h_t"
    layer = "top layer" if args.layer == -1 else f"layer {args.layer}"
    fig = plot_hidden_states(states, title=f"char LM {model.cell.upper()} {which}, {layer} ({Path(args.run).name})",
                             tick_labels=list(text))
    fig.savefig(out)
    print(f"image: {out}")
    return 0


# ---- curves ---------------------------------------------------------------------------------------

def run_curves(args) -> int:
    from rnnkit.viz.curves import plot_curves

    run = Path(args.run_dir)
    if not (run / "metrics.csv").is_file() and not (run.is_file() and run.suffix == ".csv"):
        raise CLIError(f"no metrics.csv in {run} (expected a run folder written by rnnkit)")
    with user_errors():
        fig = plot_curves(run)
    default = str((run if run.is_dir() else run.parent) / "curves.png")
    out = _out_path(args.out, default)
    fig.savefig(out)
    print(f"image: {out}")
    return 0


def _memory_or_run_args(p, hidden_size: int, image: str) -> None:
    """The options gradflow and heatmap share: the memory task to train on, or a run folder."""
    p.add_argument("--task", choices=("adding", "copy"), default="adding")
    p.add_argument("--length", type=int, default=50)
    p.add_argument("--train-steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--hidden-size", type=int, default=hidden_size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--run", metavar="RUN_DIR", help="a run folder: 'rnnkit task adding|copy --out-dir' or a char LM's")
    p.add_argument("--text", default=DEFAULT_TEXT, help="char-LM runs: the text to run the model on")
    p.add_argument("--out", metavar="FILE", help=f"image file (default {image})")


def register(sub) -> None:
    p = sub.add_parser("diagram", help="the unrolled graph as Mermaid text (and an image with --out)",
                       description="Print the unrolled computation graph as a Mermaid flowchart; "
                                   "with --out, also draw it (matplotlib, no network).")
    p.add_argument("--cell", choices=CELL_CHOICES, default="lstm")
    p.add_argument("--num-layers", type=int, default=1)
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--steps", type=int, default=3, help="time steps to unroll (default 3)")
    p.add_argument("--hidden-size", type=int, default=None, help="shown in the title")
    p.add_argument("--input-size", type=int, default=None, help="shown in the title")
    p.add_argument("--run", metavar="RUN_DIR", help="take cell, layers, directions from RUN_DIR/config.json")
    p.add_argument("--out", metavar="FILE", help="also draw the diagram into FILE (.png or .svg)")
    p.set_defaults(func=run_diagram)

    p = sub.add_parser("gradflow", help="plot ‖dLoss/dh_t‖ per time step (vanishing gradients)",
                       description="Gradient norm per time step on a memory task, per cell, before and "
                                   "after training; or of a trained model from a run folder.")
    p.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated (default rnn,lstm,gru)")
    _memory_or_run_args(p, hidden_size=64, image="gradflow.png")
    p.set_defaults(func=run_gradflow)

    p = sub.add_parser("heatmap", help="hidden-state heat map over one sequence",
                       description="Hidden units (rows) over time steps (columns) of a model trained "
                                   "on a memory task, or of a run folder's model.")
    p.add_argument("--cell", choices=CELL_CHOICES, default="lstm")
    p.add_argument("--layer", type=int, default=-1)
    p.add_argument("--cell-state", action="store_true", help="show an LSTM's c_t instead of h_t")
    _memory_or_run_args(p, hidden_size=32, image="heatmap.png")
    p.set_defaults(func=run_heatmap)

    p = sub.add_parser("curves", help="training curves from a run folder's metrics.csv",
                       description="Plot the loss and metric columns of RUN_DIR/metrics.csv against step.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", metavar="FILE", help="image file (default RUN_DIR/curves.png)")
    p.set_defaults(func=run_curves)
