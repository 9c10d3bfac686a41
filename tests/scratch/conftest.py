"""Make scratch_helpers importable from every test under tests/scratch, tests/scratch/fast included.

pytest puts each test file's own directory on sys.path (rootdir-based imports, no __init__.py), so
tests in fast/ would not see this directory's helpers otherwise.
"""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
