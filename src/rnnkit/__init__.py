"""rnnkit: recurrent neural networks you can read, verify against torch.nn, and run fast.

The public names load lazily so that ``import rnnkit.scratch`` (NumPy only) never imports torch.
``rnnkit.options`` (scoped execution choices) needs no torch and is there at once.
"""

from importlib import import_module

from rnnkit._version import __version__
from rnnkit.options import options  # the function; the module is rnnkit.options's namesake

# public name -> module that defines it
_LAZY = {
    # torch.nn drop-ins and the general recurrence (rnnkit.nn)
    "RNN": "rnnkit.nn",
    "LSTM": "rnnkit.nn",
    "GRU": "rnnkit.nn",
    "RNNCell": "rnnkit.nn",
    "LSTMCell": "rnnkit.nn",
    "GRUCell": "rnnkit.nn",
    "Elman": "rnnkit.nn",
    "Recurrent": "rnnkit.nn",
    # the fast path's layers: fused over time, layer norm, recurrent dropout, parallel-scan cells
    "FusedRNN": "rnnkit.nn.fused",
    "FusedLSTM": "rnnkit.nn.fused",
    "FusedGRU": "rnnkit.nn.fused",
    "LayerNormLSTM": "rnnkit.nn.layernorm",
    "LayerNormGRU": "rnnkit.nn.layernorm",
    "LockedDropout": "rnnkit.nn.dropout",
    "MinGRU": "rnnkit.nn.mingru",
    "MinLSTM": "rnnkit.nn.mingru",
    # sequence tasks: tagging, classification, encoder-decoder, the masked per-step loss
    "Tagger": "rnnkit.models.tagger",
    "SequenceClassifier": "rnnkit.models.classifier",
    "Seq2Seq": "rnnkit.models.seq2seq",
    "masked_cross_entropy": "rnnkit.tasks.losses",
    # the character language model: model, vocabulary, training configuration
    "CharLM": "rnnkit.models.charlm",
    "Vocab": "rnnkit.data",
    "TrainConfig": "rnnkit.train",
}

__all__ = ["__version__", "options", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__():
    return sorted(__all__)
