"""The ``rnnkit`` command line: argument parsing only; every command calls a library function.

Each module in this package that defines ``register(subparsers)`` adds its subcommands; the parser it
adds must set ``func`` (a callable taking the parsed namespace and returning an exit code).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import shlex
import shutil
import sys

from rnnkit._version import __version__


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2 (or ``code``), no traceback."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


@contextlib.contextmanager
def user_errors(*types: type[BaseException]):
    """Turn the given exceptions (default ValueError: a library's bad-input error, which already
    says what was expected and what was got) into a `CLIError` with the same message."""
    caught = types or (ValueError,)
    try:
        yield
    except caught as err:
        raise CLIError(cli_message(err)) from err


def cli_message(err: BaseException) -> str:
    """A library error's message as the command line should word it (``err.cli`` when it has one:
    a flag such as ``--resume`` where the library names the field ``resume=True``)."""
    return getattr(err, "cli", None) or str(err)


def command_name() -> str:
    """How this command was called, for the next commands it prints: ``.venv/bin/rnnkit`` when the
    user typed that (the venv is not active, so a bare ``rnnkit`` would not run), else ``rnnkit``."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) != "rnnkit":
        return "rnnkit"  # called through main() or python -m rnnkit
    on_path = shutil.which("rnnkit")
    if on_path and os.path.realpath(on_path) == os.path.realpath(argv0):
        return "rnnkit"
    return shlex.quote(argv0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnkit",
        description="Recurrent neural networks you can read, verify and run: train, sample and "
                    "evaluate a character language model, train on sequence tasks, draw diagrams and "
                    "plots. `rnnkit info` describes this machine for bug reports.",
    )
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


@contextlib.contextmanager
def _torch_threads_restored():
    """A command may pin torch's thread count (``--threads``); a caller in the same process (a
    test, a notebook calling ``main``) gets its own count back afterwards. Where torch was not
    loaded before the command, the process is the command's own."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if before is not None and torch.get_num_threads() != before:
            torch.set_num_threads(before)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        with _torch_threads_restored():
            return int(args.func(args) or 0)
    except CLIError as err:
        print(f"rnnkit {args.command}: error: {err}", file=sys.stderr)
        return err.code
    except BrokenPipeError:
        # the reader went away (`rnnkit diagram | head`): stop quietly, as Unix tools do;
        # point stdout at devnull so the interpreter's final flush does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
