"""Pictures from the command line: ``rnnkit diagram``, ``rnnkit gradflow``, ``rnnkit heatmap``,
``rnnkit curves``. Each writes a PNG (or SVG) and prints its path; ``diagram`` also prints Mermaid.

Every argument and path is checked before any training or drawing starts; training shows progress.
``gradflow`` and ``heatmap`` live in `rnnkit.cli.viz_models`.
"""

from __future__ import annotations

from pathlib import Path

from rnnkit.checks import check_int
from rnnkit.cli import CLIError, user_errors
from rnnkit.cli.paths import check_image_path, check_run_folder, save_figure
from rnnkit.tasks.configs import CELLS

CELL_CHOICES = CELLS  # the task models' cells (tasks.configs needs no torch)


def given(args, names) -> list[str]:
    """The flags among ``names`` the user gave (their default is None)."""
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n, None) is not None]


def refuse_with_run(args, names, why: str) -> None:
    """CLIError if flags that do nothing with ``--run`` were given with it."""
    extra = given(args, names)
    if args.run and extra:
        raise CLIError(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} nothing with --run ({why})")


def check_at_least(args, minimum: int, *names: str) -> None:
    """CLIError unless each given flag among ``names`` is at least ``minimum`` (rnnkit.checks' wording)."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            with user_errors():
                check_int("--" + name.replace("_", "-"), value, minimum)


# ---- diagram --------------------------------------------------------------------------------------

def run_diagram(args) -> int:
    from rnnkit.cli.runs import model_shape, read_run_json
    from rnnkit.viz.diagram import draw_diagram, to_mermaid, unrolled_graph

    out = check_image_path(args.out) if args.out else None
    check_at_least(args, 1, "hidden_size", "input_size")
    refuse_with_run(args, ("cell", "num_layers", "bidirectional", "hidden_size", "input_size"),
                    "the shape comes from the run's config.json")
    shape = {"cell": args.cell or "lstm", "num_layers": 1 if args.num_layers is None else args.num_layers,
             "bidirectional": bool(args.bidirectional), "hidden_size": args.hidden_size,
             "input_size": args.input_size}
    if args.run:
        shape.update(model_shape(args.run, read_run_json(args.run)))
    with user_errors():
        g = unrolled_graph(steps=args.steps, **shape)
    fig = draw_diagram(g) if out else None
    print(to_mermaid(g), end="")
    if out:
        print(f"%% image: {save_figure(fig, out)}")
    return 0


# ---- curves ---------------------------------------------------------------------------------------

def run_curves(args) -> int:
    import csv

    from rnnkit.viz.curves import plot_curves

    run = Path(args.run_dir)
    if run.is_file() or (not run.exists() and run.suffix == ".csv"):
        if not run.is_file():
            raise CLIError(f"RUN_DIR: {run} does not exist")
        if run.suffix.lower() != ".csv":
            raise CLIError(f"RUN_DIR must be a run folder or a metrics .csv file, got the file {run}")
        default = run.parent / "curves.png"
    else:
        default = check_run_folder(run, "RUN_DIR", needs="metrics.csv") / "curves.png"
    out = check_image_path(args.out or default)
    try:
        fig = plot_curves(run)
    except (ValueError, csv.Error, UnicodeDecodeError) as err:
        raise CLIError(str(err).splitlines()[0]) from None
    print(f"image: {save_figure(fig, out)}")
    return 0


def register(sub) -> None:
    from rnnkit.cli.viz_models import register_models

    p = sub.add_parser("diagram", help="the unrolled graph as Mermaid text (and an image with --out)",
                       description="Print the unrolled computation graph as a Mermaid flowchart; "
                                   "with --out, also draw it (matplotlib, no network).")
    p.add_argument("--cell", choices=CELL_CHOICES, default=None, help="recurrent cell (default lstm)")
    p.add_argument("--num-layers", type=int, default=None, help="stacked layers, 1-8 (default 1)")
    p.add_argument("--bidirectional", action="store_true", default=None,
                   help="a second direction per layer, read right to left (default off)")
    p.add_argument("--steps", type=int, default=3, help="time steps to unroll, 1-32 (default 3)")
    p.add_argument("--hidden-size", type=int, default=None, help="H, shown in the title (default: not shown)")
    p.add_argument("--input-size", type=int, default=None, help="I, shown in the title (default: not shown)")
    p.add_argument("--run", metavar="RUN_DIR",
                   help="take cell, layers, directions and sizes from RUN_DIR/config.json (default: the flags)")
    p.add_argument("--out", metavar="FILE", help="also draw the diagram into FILE, .png or .svg (default: text only)")
    p.set_defaults(func=run_diagram)

    register_models(sub)

    p = sub.add_parser("curves", help="training curves from a run folder's metrics.csv",
                       description="Plot the columns of RUN_DIR/metrics.csv against step: losses, "
                                   "accuracies and other metrics on separate axes, baselines labelled.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (or a link to one, or its metrics.csv)")
    p.add_argument("--out", metavar="FILE", help="image file, .png or .svg (default RUN_DIR/curves.png)")
    p.set_defaults(func=run_curves)
