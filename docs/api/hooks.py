"""MkDocs hooks: point each ``::: rnnkit.Name`` at the module that defines it, and unlink source paths.

The reference pages name objects by their public path (``rnnkit.FusedLSTM``,
``rnnkit.train.TrainConfig``). Some of those are loaded lazily at run time (a module
``__getattr__``), which static analysis cannot follow, and the files behind them may move. So before
mkdocstrings reads a page, each directive naming a class, a function or a constant is rewritten to
the module that holds it, found by importing the public path. Module directives
(``::: rnnkit.tasks.adding``) are left as written.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

DIRECTIVE = re.compile(r"^::: ([\w.]+)[ \t]*$", re.MULTILINE)
# a link from a page in docs/ to a file of the repository outside it (``[lstm.cpp](../src/...)``):
# it works where the Markdown is read in the repository, but the site holds only docs/
SOURCE_LINK = re.compile(r"\[([^\]]+)\]\((?:\.\./)+((?:src|tests|benchmarks|tutorials)/[^)#\s]*)[^)]*\)")


def defined_at(path: str) -> str:
    """``rnnkit.FusedLSTM`` -> ``rnnkit.nn.fused.FusedLSTM``; a module or an unknown path as given."""
    parent, _, name = path.rpartition(".")
    try:
        package = importlib.import_module(parent)
        obj = getattr(package, name)
    except (ImportError, AttributeError):
        return path  # a module path, or a wrong one: mkdocstrings says which
    if inspect.ismodule(obj):
        return path
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    # a constant (a dict, a number): the submodule that holds the same object
    for info in pkgutil.iter_modules(getattr(package, "__path__", [])):
        module = importlib.import_module(f"{parent}.{info.name}")
        if vars(module).get(name) is obj:
            return f"{module.__name__}.{name}"
    return path


def unlink_source(match: re.Match) -> str:
    """``[text](../src/a/b.py)`` -> ``text`` when the text names the file, else ``text (src/a/b.py)``."""
    text, path = match.group(1), match.group(2)
    name = path.rstrip("/").rpartition("/")[2]
    return text if name and name in text else f"{text} (`{path}`)"


def on_page_markdown(markdown: str, **kwargs) -> str:
    markdown = SOURCE_LINK.sub(unlink_source, markdown)
    return DIRECTIVE.sub(lambda m: f"::: {defined_at(m.group(1))}", markdown)
