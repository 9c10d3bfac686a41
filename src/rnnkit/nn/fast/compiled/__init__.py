"""The compiled CPU kernels: the LSTM and layer-norm LSTM time loop in C++ (opt-in).

``lstm.cpp`` is the C++ (a PyTorch extension, built on first use by :mod:`.build`); ``lstm.py`` is
the bridge, a kernel with the same interface and mathematics as the eager ones in
:mod:`rnnkit.nn.fast.lstm`. A call takes it with ``rnnkit.options(compiled=True)`` or a layer's
``compiled=True``, on CPU tensors in float32 or float64; ``tests/nn/fast/compiled/test_lstm.py``
ties it to the eager kernels, the readable loop and float64 finite differences.
"""

from rnnkit.nn.fast.compiled.build import CPUKernelsUnavailable, available, load

__all__ = ["CPUKernelsUnavailable", "available", "load"]
