"""rnnkit's fast path: one autograd Function per sequence, with hand-written BPTT.

One idea per file:

* ``driver.py``     the autograd Function: time, direction, masks, ``W_hh``; ``recurrence()``,
                    the entry point
* ``registry.py``   the cells it runs and their kernels (``KERNELS``)
* ``elman.py``, ``lstm.py``, ``gru.py``   one step's arithmetic per cell, forward and backward
* ``products.py``   the per-step products with ``W_hh`` (MKL's packed GEMM where it applies)
* ``workspace.py``  the buffer pool reused across calls
* ``ops.py``        layer norm and activation slopes the kernels share
* ``compiled/``     the time loops in C++ (``lstm.cpp``, ``gru.cpp``, ``elman.cpp``), their
                    bridges and the build

Each path here is tested against the readable loop (``rnnkit.nn.loop.scan``): see
docs/architecture.md for the test that ties each pair. This ``__init__`` imports nothing, so
that `rnnkit.nn.paths` can read the registry without loading the driver.
"""
