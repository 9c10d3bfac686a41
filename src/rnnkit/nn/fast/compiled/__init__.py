"""The compiled CPU kernels: the time loop of every fast-path cell in C++ (on by default).

One PyTorch extension, built on first use by `.build`, from one C++ file per cell beside
its Python bridge (a kernel with the same interface and mathematics as the eager one in
`rnnkit.nn.fast`): ``lstm.cpp`` / ``lstm.py`` (LSTM, layer-norm LSTM), ``gru.cpp`` /
``gru.py`` (GRU, layer-norm GRU), ``elman.cpp`` / ``elman.py`` (tanh, relu). The GRU and Elman
cells share one time loop, ``one_state_loop.h`` (its arguments: ``one_state.py``); every cell
shares the vector helpers of ``vec_ops.h`` and the products with ``W_hh`` of ``linear.h``;
``module.cpp`` is the extension's Python module. Every call on CPU
tensors in float32 or float64 takes them unless ``RNNKIT_COMPILED=0``,
``rnnkit.options(compiled=False)`` or a layer's ``compiled=False`` says otherwise (or they could
not be built: one warning, then eager); ``tests/nn/fast/compiled/`` ties each to its eager kernel,
the readable loop and float64 finite differences.
"""

from rnnkit.nn.fast.compiled.build import CPUKernelsUnavailable, available, load

__all__ = ["CPUKernelsUnavailable", "available", "load"]
