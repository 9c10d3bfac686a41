"""Deprecated: this module is now `rnnkit.models.build` (it builds a task model's recurrent layer
from a cell name; "layers" said less and clashed with the layers of `rnnkit.nn` and `rnnkit.scratch`).
"""

import warnings

from rnnkit.models.build import CELLS, make_rnn  # noqa: F401 (the old names, re-exported)

warnings.warn("rnnkit.models.layers is deprecated: use rnnkit.models.build", DeprecationWarning,
              stacklevel=2)
