"""Run Python code in a fresh interpreter where torch cannot be imported: what rnnkit promises for
``rnnkit.scratch`` and for the exported sampler (``rnnkit.export.ort_sample``). A plain module
(tests/conftest.py puts this folder on sys.path), shared by tests/scratch and tests/export."""

from __future__ import annotations

import subprocess
import sys
import textwrap

#: an import hook, installed first, that refuses torch and every torch.* module
BLOCK_TORCH = textwrap.dedent(
    """
    import sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"{name} is blocked for this test")
            return None

    sys.meta_path.insert(0, BlockTorch())
    """
)


def run_without_torch(code: str, *args: str) -> subprocess.CompletedProcess:
    """``python -c`` of ``code`` (dedented) behind ``BLOCK_TORCH``, with ``args`` as its argv;
    stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=120)
