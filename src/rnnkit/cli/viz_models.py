"""``rnnkit gradflow`` and ``rnnkit heatmap``: pictures of a model, trained here on a memory task or
read from a run folder (a memory-task run, or a char LM's with ``--text``).

The order is always the same: check every flag and path, say what will happen, then import torch,
train (with a progress bar on a terminal, log lines otherwise) and draw.
"""

from __future__ import annotations

from rnnkit.checks import check_positive_number
from rnnkit.cli import CLIError, user_errors
from rnnkit.cli.paths import check_image_path, run_name, save_figure
from rnnkit.cli.viz import CELL_CHOICES, check_at_least, refuse_with_run

DEFAULT_TEXT = "To be, or not to be, that is the question:"
TRAINING = {"task": "adding", "length": 50, "train_steps": 2000, "lr": 3e-3, "seed": 0}  # flag defaults
DEFAULT_TOP = 32


def _common_checks(args, image: str):
    """The checks gradflow and heatmap share; returns the image path."""
    out = check_image_path(args.out or image)
    check_at_least(args, 1, "threads", "length", "hidden_size")
    check_at_least(args, 0, "train_steps", "seed")
    if args.lr is not None:
        with user_errors():
            check_positive_number("--lr", args.lr)
    if not args.run and args.text is not None:
        raise CLIError("--text is the input of a char-LM run: it needs --run")
    return out


def _memory_config(args, cell: str, hidden: int):
    from rnnkit.tasks.configs import MemoryTaskConfig

    v = {k: (getattr(args, k) if getattr(args, k) is not None else d) for k, d in TRAINING.items()}
    with user_errors():
        return MemoryTaskConfig(task=v["task"], cell=cell, length=v["length"], steps=v["train_steps"],
                                lr=v["lr"], seed=v["seed"],
                                hidden_size=hidden if args.hidden_size is None else args.hidden_size)


def _read_run(args, seed_ok: bool):
    """(kind, cfg) of ``--run``, after refusing the flags that only set up a training."""
    from rnnkit.cli.runs import read_run_json, run_kind

    names = [*TRAINING, "hidden_size", "cell", "cells"]
    refuse_with_run(args, [n for n in names if not (seed_ok and n == "seed")],
                    "the run folder brings its own model")
    cfg = read_run_json(args.run)
    kind = run_kind(args.run, cfg)
    if kind != "charlm" and args.text is not None:
        raise CLIError(f"--text is the input of a char-LM run; {args.run} is a memory-task run")
    if kind == "charlm" and args.seed is not None:
        raise CLIError("--seed picks a memory-task sequence; a char-LM run reads --text instead")
    what = "char-LM" if kind == "charlm" else "memory-task"
    print(f"{args.command}: the {what} model of {args.run}", flush=True)  # said before torch loads
    return kind, cfg


def _threads(n: int | None) -> None:
    import torch

    torch.set_num_threads(n or 1)


def _char_ids(vocab, text: str):
    """(T, 1) ids of ``text``, keeping only characters the model knows."""
    import torch

    known = "".join(c for c in text if not vocab.unknown(c))
    if len(known) < 2:
        raise CLIError(f"--text needs at least 2 characters from the model's vocabulary, got {text!r}")
    return known, torch.as_tensor(vocab.encode(known), dtype=torch.long)[:, None]  # (T, 1)


def _bar(total: int, desc: str):
    from rnnkit.tasks.progress import StepProgress

    return StepProgress(total, desc)


# ---- gradient flow --------------------------------------------------------------------------------

def run_gradflow(args) -> int:
    out = _common_checks(args, "gradflow.png")
    if args.run:
        kind, cfg = _read_run(args, seed_ok=False)
        _threads(args.threads)
        fig = _gradflow_of_run(args, kind, cfg)
    else:
        cells = tuple(c.strip().lower() for c in (args.cells or "rnn,lstm,gru").split(","))
        bad = [c for c in cells if c not in CELL_CHOICES]
        if bad or len(set(cells)) != len(cells):
            raise CLIError(f"--cells must list distinct cells from {', '.join(CELL_CHOICES)}, "
                           f"got {args.cells!r}")
        config = _memory_config(args, cells[0], 64)
        print(f"gradflow: {config.task} T={config.length}, H={config.hidden_size}: measuring "
              f"‖∂L/∂h_t‖, training {', '.join(cells)} for {config.steps} steps each, then measuring "
              f"again", flush=True)
        _threads(args.threads)
        from rnnkit.viz.memory_gradflow import memory_gradient_flow, plot_memory_gradient_flow

        flows = memory_gradient_flow(config, cells, progress=lambda c: _bar(config.steps, f"training {c}"))
        fig = plot_memory_gradient_flow(flows, config)
        for cell, flow in flows.items():
            _print_norms({f"{cell} before": flow["before"], f"{cell} after": flow["after"]})
    print(f"image: {save_figure(fig, out)}")
    return 0


def _gradflow_of_run(args, kind: str, cfg: dict):
    import torch

    from rnnkit.cli.runs import load_run
    from rnnkit.tasks.memory import memory_batch, memory_loss
    from rnnkit.viz.gradflow import hidden_gradient_norms, plot_gradient_norms

    _, model, info = load_run(args.run, cfg)
    name = run_name(args.run)
    if kind == "memory":
        config = info
        x, y = memory_batch(config, 128, torch.Generator().manual_seed(20_000 + config.seed))
        norms = hidden_gradient_norms(model, lambda m: memory_loss(m, x, y, config.task))  # (L, D, T)
        title = f"{config.task} T={config.length}, trained {config.cell.upper()} ({name})"
    else:  # char LM: the loss of predicting the text's last character from the ones before it
        text, ids = _char_ids(info, args.text or DEFAULT_TEXT)
        norms = hidden_gradient_norms(
            model, lambda m: torch.nn.functional.cross_entropy(m(ids[:-1])[0][-1], ids[-1]))
        title = f"char LM {model.cell.upper()} ({name}): loss at the last of {len(text)} chars"
    curves = {f"layer {layer}": norms[layer, 0] for layer in range(norms.size(0))}
    _print_norms(curves)
    return plot_gradient_norms(curves, title=title + ": ‖∂L/∂hₜ‖")


def _print_norms(curves) -> None:
    for name, v in curves.items():
        ratio = float(v[0]) / max(float(v[-1]), 1e-30)
        print(f"  {name:>14}: ‖∂L/∂h_t‖ at t=0 {float(v[0]):.3e}, at t=T-1 {float(v[-1]):.3e}, ratio {ratio:.2e}")


# ---- heat map -------------------------------------------------------------------------------------

def _parse_units(args) -> list[int] | str | None:
    """--units as a list of indices, "all", or None (then --top decides)."""
    check_at_least(args, 1, "top")
    if args.units is None:
        return None
    if args.top is not None:
        raise CLIError("give --units or --top, not both")
    if args.units.strip().lower() == "all":
        return "all"
    try:
        units = [int(u) for u in args.units.split(",") if u.strip()]
    except ValueError:
        raise CLIError(f"--units must be 'all' or comma-separated unit indices such as 3,17,40, "
                       f"got {args.units!r}") from None
    if not units or min(units) < 0 or len(set(units)) != len(units):
        raise CLIError(f"--units must list distinct indices >= 0, got {args.units!r}")
    return units


def _check_layer_and_units(args, units, cell: str, num_layers: int, hidden: int) -> None:
    if not -num_layers <= args.layer < num_layers:
        raise CLIError(f"--layer must lie in [-{num_layers}, {num_layers}) for this {num_layers}-layer "
                       f"model, got {args.layer}")
    if args.cell_state and cell != "lstm":
        raise CLIError(f"--cell-state shows an LSTM's c_t; this model is {cell.upper()}")
    if isinstance(units, list) and max(units) >= hidden:
        raise CLIError(f"--units must be indices below H={hidden}, got {max(units)}")


def choose_units(states, units, top: int | None, sort: str) -> tuple[list[int], str]:
    """The units to draw for (T, H) states, bottom row first, and how they were chosen."""
    from rnnkit.viz.heatmap import most_varying_units

    H = states.shape[1]
    n = DEFAULT_TOP if top is None else top
    ranked = most_varying_units(states, H)  # most varying first
    if isinstance(units, list):
        chosen, how = units, f"units {', '.join(map(str, sorted(units)))} (--units)"
    elif units == "all" or n >= H:
        chosen, how = list(range(H)), f"all {H} units"
    else:
        chosen, how = ranked[:n], f"the {n} of {H} units that vary most (largest std over time)"
    if sort == "variation":
        rank = {j: i for i, j in enumerate(ranked)}
        return sorted(chosen, key=lambda j: -rank[j]), how + ", most varying at the top"
    return sorted(chosen), how + ", rows by unit index"


def run_heatmap(args) -> int:
    out = _common_checks(args, "heatmap.png")
    units = _parse_units(args)
    if args.run:
        kind, cfg = _read_run(args, seed_ok=True)
        _threads(args.threads)
        from rnnkit.cli.runs import load_run

        _, model, info = load_run(args.run, cfg)
        cell = info.cell if kind == "memory" else model.cell
        _check_layer_and_units(args, units, cell, model.rnn.num_layers, model.rnn.hidden_size)
        if kind == "charlm":
            return _charlm_heatmap(args, model, info, units, out)
        config, trained = info, f"trained ({run_name(args.run)})"
    else:
        config = _memory_config(args, args.cell or "lstm", 32)
        _check_layer_and_units(args, units, config.cell, config.num_layers, config.hidden_size)
        print(f"heatmap: training {config.cell} on {config.task} T={config.length} for {config.steps} "
              f"steps, then drawing its states on one sequence", flush=True)
        _threads(args.threads)
        from rnnkit.tasks.memory import train_memory_task

        with _bar(config.steps, f"training {config.cell}") as bar:
            model, result = train_memory_task(config, on_step=bar)
        metric = "MSE" if config.task == "adding" else "CE"
        trained = f"after {config.steps} steps, {metric} {result.metric:.3g} vs baseline {result.baseline:.3g}"
    return _memory_heatmap(args, model, config, trained, units, out)


def _memory_heatmap(args, model, config, trained: str, units, out) -> int:
    import torch

    from rnnkit.tasks.memory import memory_batch
    from rnnkit.viz.heatmap import hidden_states, plot_hidden_states

    seed = 0 if args.seed is None else args.seed
    x, y = memory_batch(config, 1, torch.Generator().manual_seed(30_000 + seed))
    model.eval()
    states = hidden_states(model, lambda m: m(x), layer=args.layer, cell_state=args.cell_state)[0]  # (T, H)
    if config.task == "adding":
        marks = torch.nonzero(x[0, :, 1]).flatten().tolist()
        note = f"markers at t={marks}, target {float(y[0]):.3f}"
    else:
        K = config.num_symbols
        marks = [K - 1, K + config.length - 1]  # last symbol read, delimiter
        note = "dashed: end of the symbols, the delimiter"
    shown, how = choose_units(states, units, args.top, args.sort)
    which = "c_t" if args.cell_state else "h_t"
    fig = plot_hidden_states(
        states, title=f"{config.cell.upper()} {which} on one {config.task} sequence (T={config.length}), "
                      f"{trained}\n{note}; {how}", marks=marks, units=shown)
    print(f"image: {save_figure(fig, out)}")
    return 0


def _charlm_heatmap(args, model, vocab, units, out) -> int:
    from rnnkit.viz.heatmap import hidden_states, plot_hidden_states

    text, ids = _char_ids(vocab, args.text or DEFAULT_TEXT)
    states = hidden_states(model, lambda m: m(ids), layer=args.layer, cell_state=args.cell_state)[0]
    shown, how = choose_units(states, units, args.top, args.sort)
    which = "c_t" if args.cell_state else "h_t"
    layer = "top layer" if args.layer == -1 else f"layer {args.layer}"
    fig = plot_hidden_states(states, title=f"char LM {model.cell.upper()} {which}, {layer} "
                                           f"({run_name(args.run)})\n{how}",
                             tick_labels=list(text), units=shown)
    print(f"image: {save_figure(fig, out)}")
    return 0


# ---- flags ----------------------------------------------------------------------------------------

def _shared_flags(p, hidden_size: int, image: str) -> None:
    """The options gradflow and heatmap share: the memory task to train on, or a run folder."""
    p.add_argument("--task", choices=("adding", "copy"), default=None, help="memory task to train on (default adding)")
    p.add_argument("--length", type=int, default=None,
                   help="adding: sequence length T; copy: the delay T (default 50)")
    p.add_argument("--train-steps", type=int, default=None, help="training steps per model (default 2000)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 0.003)")
    p.add_argument("--hidden-size", type=int, default=None, help=f"hidden units H (default {hidden_size})")
    p.add_argument("--seed", type=int, default=None, help="random seed of weights and data (default 0)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default 1: these models are small, and on a busy machine "
                        "more threads mostly wait for each other)")
    p.add_argument("--run", metavar="RUN_DIR",
                   help="draw a trained model instead: a run folder from 'rnnkit task adding|copy "
                        "--out-dir' or 'rnnkit train' (or a link to one, such as runs/latest) "
                        "(default: train a new model)")
    p.add_argument("--text", default=None, help=f"char-LM runs: the text to run the model on (default {DEFAULT_TEXT!r})")
    p.add_argument("--out", metavar="FILE", help=f"image file, .png or .svg (default {image})")


def register_models(sub) -> None:
    p = sub.add_parser("gradflow", help="plot ‖dLoss/dh_t‖ per time step (vanishing gradients)",
                       description="Gradient norm per time step on a memory task, per cell, before and "
                                   "after training; or of a trained model from a run folder.")
    p.add_argument("--cells", default=None, help="comma-separated cells to compare (default rnn,lstm,gru)")
    _shared_flags(p, hidden_size=64, image="gradflow.png")
    p.set_defaults(func=run_gradflow)

    p = sub.add_parser("heatmap", help="hidden-state heat map over one sequence",
                       description="Hidden units (rows, labelled) over time steps (columns) of a model "
                                   "trained on a memory task, or of a run folder's model.")
    p.add_argument("--cell", choices=CELL_CHOICES, default=None, help="cell to train (default lstm)")
    p.add_argument("--layer", type=int, default=-1, help="layer to show, from 0; -1 the top one (default -1)")
    p.add_argument("--cell-state", action="store_true", help="show an LSTM's c_t instead of h_t (default h_t)")
    p.add_argument("--top", type=int, default=None,
                   help=f"show the N units that vary most over the sequence (default {DEFAULT_TOP})")
    p.add_argument("--units", default=None, metavar="LIST",
                   help="show these units instead, e.g. 3,17,40, or 'all' (default: --top)")
    p.add_argument("--sort", choices=("index", "variation"), default="index",
                   help="row order: by unit index, or most varying at the top (default index)")
    _shared_flags(p, hidden_size=32, image="heatmap.png")
    p.set_defaults(func=run_heatmap)
