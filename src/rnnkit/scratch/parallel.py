"""Deprecated module: BatchSplit moved to rnnkit.scratch.fast (batch_split.py), with the tuned engine.

``from rnnkit.scratch.parallel import BatchSplit`` still works and raises a DeprecationWarning;
use ``from rnnkit.scratch.fast import BatchSplit`` (and ``MIN_SLICE``).
"""

from rnnkit.scratch.deprecation import renamed

__getattr__ = renamed(__name__, {
    "BatchSplit": "rnnkit.scratch.fast:BatchSplit",
    "MIN_SLICE": "rnnkit.scratch.fast:MIN_SLICE",
})
