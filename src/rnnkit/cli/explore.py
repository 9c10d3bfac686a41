"""``rnnkit explore RUN_DIR``: the activation explorer, served on 127.0.0.1 or written to one file.

    rnnkit explore runs/shakespeare                       # http://127.0.0.1:8765/
    rnnkit explore runs/shakespeare --text scene.txt --port 9000
    rnnkit explore runs/shakespeare --html explore.html   # one self-contained file to share
"""

from __future__ import annotations

import sys
from pathlib import Path

from rnnkit.checks import check_range
from rnnkit.cli import CLIError, user_errors

DEFAULT_CHARS = 2000  # the default text: this much of the run's validation split
SAMPLE_CHARS = 1000  # ... or, with the corpus out of reach, this much sampled from the model


def _default_text(model, vocab, cfg) -> tuple[str, str]:
    """(text, where it came from): the start of the run's validation text if its corpus is on
    this machine (never downloaded: the explorer works offline), else a sample of the model."""
    from rnnkit.data.corpora import BUILTIN, cache_dir, load_corpus
    from rnnkit.data.text import CorpusError, split_text
    from rnnkit.train import default_prompt, generate

    data = cfg.data
    local = (Path(data).expanduser().is_file() or data == BUILTIN
             or (data == "tinyshakespeare" and (cache_dir() / "tinyshakespeare.txt").is_file()))
    if local:
        try:
            _, val = split_text(load_corpus(data).text, cfg.val_fraction)
            text = val[:DEFAULT_CHARS]
            if not vocab.unknown(text):
                cut = text.rfind("\n")  # end on a whole line when there is one
                return (text[:cut + 1] if cut > DEFAULT_CHARS // 2 else text), f"{data} (validation)"
        except CorpusError:
            pass
    prompt = default_prompt(vocab)
    text = prompt + "".join(generate(model, vocab, prompt, SAMPLE_CHARS, temperature=0.8, seed=0))
    return text, "a sample of the model (temperature 0.8, seed 0)"


def run(args) -> int:
    from rnnkit.data.text import CorpusError, read_text
    from rnnkit.explore.bundle import check_text
    from rnnkit.explore.server import Explorer, write_html
    from rnnkit.train import CheckpointError, load_model

    with user_errors():
        check_range("--port", args.port, 0, 65535)  # 0: any free port
    try:
        text = read_text(args.text) if args.text is not None else args.prompt
        if text is not None:  # its length is known before the model loads
            check_text(text, _AnyVocab(), f"--text {args.text}" if args.text else "--prompt")
        model, vocab, cfg = load_model(args.run_dir)
    except (CorpusError, CheckpointError, ValueError) as err:
        raise CLIError(str(err)) from None
    source = args.text or "--prompt"
    if text is None:
        text, source = _default_text(model, vocab, cfg)
    try:
        check_text(text, vocab, f"the text ({source})")
    except ValueError as err:
        raise CLIError(str(err)) from None
    print(f"tracing {len(text):,} characters of {source} through {args.run_dir} ...", flush=True)
    explorer = Explorer(model, vocab, title=Path(args.run_dir).resolve().name)  # runs/latest: its run
    bundle = explorer.bundle(text)
    if args.html:
        path = write_html(args.html, bundle)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): open it in a browser; "
              "re-tracing other text needs the server (rnnkit explore without --html)")
        return 0
    return _serve(explorer, bundle, args.host, args.port)


class _AnyVocab:
    """Stands in for the vocabulary while only the text's length can be checked."""

    def unknown(self, text: str) -> list[str]:
        return []


def _serve(explorer, bundle: dict, host: str, port: int) -> int:
    from rnnkit.explore.server import LOOPBACK, ExploreServer

    try:
        server = ExploreServer(explorer, bundle, host, port)
    except OSError as err:
        hint = "; pass --port N (or --port 0 for any free port)" if err.errno == 98 else ""
        raise CLIError(f"cannot listen on {host}:{port}: {err.strerror or err}{hint}") from None
    if host not in LOOPBACK:
        print(f"rnnkit explore: warning: --host {host} makes the explorer reachable from other "
              "machines; it has no password and runs the model on any text it is sent",
              file=sys.stderr, flush=True)
    print(f"serving {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "explore", help="see inside a trained char LM: an activation explorer in the browser",
        description="Colour a text by any unit of a trained char-LM run, see the next-character "
                    "predictions, and rank units (unit search, feature scan, gate saturation).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder made by rnnkit train")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", metavar="FILE", default=None, help="a UTF-8 text file to trace")
    src.add_argument("--prompt", metavar="STR", default=None, help="a text to trace, given inline")
    p.add_argument("--port", type=int, default=8765, help="port to serve on (0: any free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything else prints a warning)")
    p.add_argument("--html", metavar="OUT", default=None,
                   help="write the page with its data to one self-contained file and exit")
    p.set_defaults(func=run)
