"""A character-level language model in NumPy: the textbook model, and the loop that trains it.

min-char-rnn's job (Karpathy 2015), done with batches: B parallel streams of the text, chunks of
``seq_len`` steps with the state carried across chunks (truncated BPTT), a numerically stable
softmax, gradient clipping, and sampling with a temperature.

    x_t one-hot (V)  ->  recurrent layers (RNN, LSTM or GRU; H units)  ->  h_t (B, H)
    logits_t = h_t W_ho^T + b_ho (B, V),   loss = mean_t,b  -log softmax(logits_t)[y_t]

Use::

    from rnnkit.scratch import charlm
    result = charlm.fit(text, hidden_size=100, seq_len=25, batch_size=64, steps=2000)
    result.losses[-1], result.model.sample(200, prime="ROMEO:", temperature=0.8)

API: `NumpyCharLM` (``loss_and_grads(x_idx, y_idx, state) -> (loss, grads, state)``,
``sample(n, prime, temperature, seed) -> str``, ``encode``/``decode``, ``config()``,
``state_dict()``/``load_state_dict()``), `fit` -> `FitResult`, `evaluate`.
`NumpyCharLM` runs the textbook layers and loss (a step you can break in); `fit`
trains its speed-tuned twin `rnnkit.scratch.fast.FastNumpyCharLM` (the same numbers,
tests/scratch/fast/test_scratch_fast_equivalence.py) unless given a model. Old names (``CharLM``,
``train``, ``TrainResult``) still work and warn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rnnkit.checks import check_choice, check_positive_number
from rnnkit.scratch.deprecation import renamed
from rnnkit.scratch.linear import init_linear, linear_backward, linear_forward
from rnnkit.scratch.losses import cross_entropy_backward, cross_entropy_forward, log_softmax
from rnnkit.scratch.module import Module, check_size
from rnnkit.scratch.optim import SGD, Adagrad, Adam, clip_grad_norm, clip_grad_value
from rnnkit.scratch.recurrent_layers import GRU, LSTM, RNN

CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
OPTIMIZERS = {"adam": Adam, "adagrad": Adagrad, "sgd": SGD}


class NumpyCharLM(Module):
    """One-hot characters -> recurrent layers -> logits over the vocabulary, in textbook NumPy.

        h_t = cell(x_t, h_{t-1})  (B, H)      logits_t = h_t W_ho^T + b_ho  (B, V)

    chars: the vocabulary (a string or a sequence of distinct characters; index = position).
    Parameters: the recurrent layer's torch names (``weight_ih_l0``, ...), then ``weight_ho`` (V, H)
    and ``bias_ho`` (V,); the same names and shapes as ``rnnkit.CharLM``'s (``rnn.``/``head.``).
    The layers run the cell's step once per time step and the loss is the textbook softmax
    cross-entropy; `rnnkit.scratch.fast.FastNumpyCharLM` is the same model, speed-tuned.
    """

    layer_classes = CELLS  # the recurrent layer per cell name; the tuned twin swaps in its own

    def __init__(
        self, chars: str | Sequence[str], hidden_size: int = 100, *, cell: str = "rnn",
        num_layers: int = 1, dtype=np.float32, seed=None,
    ):
        super().__init__(dtype)
        self.chars = list(chars)
        if (not self.chars or len(set(self.chars)) != len(self.chars)
                or any(not isinstance(ch, str) or len(ch) != 1 for ch in self.chars)):
            raise ValueError(f"chars must be a non-empty sequence of distinct characters, got {chars!r}")
        check_choice("cell", cell, tuple(CELLS))
        self.cell, self.hidden_size = cell, check_size("hidden_size", hidden_size)
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}
        codes = np.array([ord(ch) for ch in self.chars], dtype=np.uint32)
        self._code_order = np.argsort(codes)  # vocabulary index of each sorted code point
        self._sorted_codes = codes[self._code_order]
        V = self.vocab_size = len(self.chars)
        rng = np.random.default_rng(seed)
        self.rnn = self.layer_classes[cell](V, hidden_size, num_layers, dtype=dtype,
                                            seed=rng.integers(2**63))
        self.num_layers = self.rnn.num_layers
        w, b = init_linear(rng, hidden_size, V, True, self.dtype)
        self._params = dict(self.rnn.parameters())  # the same arrays as the layer's
        self._params["weight_ho"], self._params["bias_ho"] = w, b

    def config(self) -> dict:
        """The constructor arguments, to rebuild the model: ``NumpyCharLM(**config)``."""
        return {"chars": "".join(self.chars), "hidden_size": self.hidden_size, "cell": self.cell,
                "num_layers": self.num_layers, "dtype": self.dtype.name}

    def encode(self, text: str) -> np.ndarray:
        """Indices (len(text),) int64 of the characters of ``text``."""
        # vectorised: code points of the text, looked up among the sorted code points of the vocabulary
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        pos = np.searchsorted(self._sorted_codes, codes)
        pos_ok = np.minimum(pos, len(self._sorted_codes) - 1)
        bad = self._sorted_codes[pos_ok] != codes
        if bad.any():
            unknown = sorted({chr(c) for c in codes[bad]})
            raise ValueError(f"text has characters outside the vocabulary: {unknown[:10]}")
        return self._code_order[pos_ok].astype(np.int64)

    def decode(self, idx) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(idx).reshape(-1))

    def initial_state(self, batch_size: int):
        return self.rnn.initial_state(batch_size)

    def forward(self, x_idx, state=None):
        """x_idx (T, B) integers -> (logits (T, B, V), state, cache)."""
        hs, state, rnn_cache = self.rnn.forward(x_idx, state)  # (T, B, H)
        logits = linear_forward(hs, self._params["weight_ho"], self._params["bias_ho"])
        return logits, state, (hs, rnn_cache)

    def backward(self, d_logits, cache):
        """d_logits (T, B, V) -> grads keyed like the state dict (no gradient into the state)."""
        hs, rnn_cache = cache
        d_hs, d_w, d_b = linear_backward(d_logits, hs, self._params["weight_ho"])
        _, _, grads = self.rnn.backward(d_hs, rnn_cache)
        grads["weight_ho"], grads["bias_ho"] = d_w, d_b
        return grads

    def loss_and_grads(self, x_idx, y_idx, state=None):
        """Mean cross-entropy (nats per character) of predicting y_idx (T, B) from x_idx (T, B).

        Returns (loss, grads, state): ``state`` is the final state, to carry into the next chunk.
        """
        y_idx = self._check_targets(x_idx, y_idx)
        logits, state, cache = self.forward(x_idx, state)  # (T, B, V)
        loss, loss_cache = cross_entropy_forward(logits, y_idx)
        grads = self.backward(cross_entropy_backward(1.0, loss_cache), cache)
        return loss, grads, state

    def _check_targets(self, x_idx, y_idx):
        y_idx = np.asarray(y_idx)
        if y_idx.shape != np.shape(x_idx) or not np.issubdtype(y_idx.dtype, np.integer):
            raise ValueError(f"y_idx must be integers of x_idx's shape. Expected {np.shape(x_idx)}, "
                             f"got {y_idx.shape} of {y_idx.dtype}")
        if y_idx.size and (y_idx.min() < 0 or y_idx.max() >= self.vocab_size):
            raise ValueError(f"y_idx must lie in [0, {self.vocab_size}), got min {y_idx.min()}, "
                             f"max {y_idx.max()}")
        return y_idx

    def sample(self, n: int, prime: str = "", temperature: float = 1.0, seed=None) -> str:
        """Generate n characters after ``prime`` (default: a random character from the vocabulary).

        Each next character is drawn from softmax(logits / temperature): temperature < 1 is more
        conservative, > 1 more varied. Returns the n new characters (without the prime).
        """
        check_positive_number("temperature", temperature)
        n = check_size("n", n, minimum=0)
        rng = np.random.default_rng(seed)
        prime_idx = self.encode(prime) if prime else rng.integers(self.vocab_size, size=1)
        logits, state, _ = self.forward(prime_idx.reshape(-1, 1))  # feed the prime: (T, 1)
        out = []
        for _ in range(n):
            logp = log_softmax(logits[-1, 0].astype(np.float64) / temperature)
            p = np.exp(logp)
            nxt = int(rng.choice(self.vocab_size, p=p / p.sum()))
            out.append(nxt)
            logits, state, _ = self.forward(np.array([[nxt]]), state)
        return self.decode(out)


def stream_batches(idx: np.ndarray, batch_size: int, seq_len: int):
    """Split a stream of indices into ``batch_size`` parallel streams and cut them into chunks.

    Returns (X, Y) of shape (N, B): X[t, b] is character t of stream b and Y[t, b] the next one.
    Chunks are X[s:s+seq_len] for s = 0, seq_len, ...; the state of stream b carries from one
    chunk into the next.
    """
    n = (len(idx) - 1) // batch_size  # steps per stream
    if n < seq_len:
        raise ValueError(
            f"text too short for batch_size={batch_size} and seq_len={seq_len}: need at least "
            f"{batch_size * seq_len + 1} characters, got {len(idx)}"
        )
    X = idx[: batch_size * n].reshape(batch_size, n).T  # (n, B)
    Y = idx[1 : batch_size * n + 1].reshape(batch_size, n).T  # (n, B)
    return np.ascontiguousarray(X), np.ascontiguousarray(Y)


@dataclass
class FitResult:
    """What `fit` returns: the trained model and the loss of every step."""

    model: NumpyCharLM
    losses: list[float] = field(default_factory=list)  # mean loss (nats/char) of every step


def fit(
    text: str,
    *,
    hidden_size: int = 100,
    cell: str = "rnn",
    num_layers: int = 1,
    seq_len: int = 25,
    batch_size: int = 64,
    steps: int = 1000,
    optimizer: str = "adam",
    lr: float = 3e-3,
    clip_norm: float | None = 5.0,
    clip_value: float | None = None,
    dtype=np.float32,
    seed: int = 0,
    model: NumpyCharLM | None = None,
    callback: Callable[[int, float, NumpyCharLM], None] | None = None,
    threads: int = 1,
) -> FitResult:
    """Train a char LM on ``text`` for ``steps`` chunks of ``seq_len`` x ``batch_size`` characters.

    Each step: loss and gradients of one chunk (state carried from the last), clipping, one
    optimiser update. The model is ``model`` when given (to continue training, or a textbook
    `NumpyCharLM` to step through), else a new `rnnkit.scratch.fast.FastNumpyCharLM`
    (the textbook model's numbers, speed-tuned) on the sorted set of characters of ``text``.
    ``callback(step, loss, model)`` runs after every update. ``threads`` > 1 splits each batch's
    streams over that many threads (`rnnkit.scratch.fast.BatchSplit`: the same gradients
    up to rounding, each thread with its share of the BLAS threads).
    """
    # imported here: rnnkit.scratch.fast builds on this module (its model subclasses NumpyCharLM)
    from rnnkit.scratch.fast import BatchSplit, FastNumpyCharLM

    check_choice("optimizer", optimizer, tuple(OPTIMIZERS))
    steps = check_size("steps", steps, minimum=0)
    if model is None:
        model = FastNumpyCharLM(sorted(set(text)), hidden_size, cell=cell, num_layers=num_layers,
                                dtype=dtype, seed=seed)
    X, Y = stream_batches(model.encode(text), check_size("batch_size", batch_size),
                          check_size("seq_len", seq_len))
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr)
    result = FitResult(model)
    state, pos = None, 0
    with BatchSplit(threads) as split:
        for step in range(steps):
            if pos + seq_len > len(X):  # end of the streams: start over from a zero state
                state, pos = None, 0
            chunk = slice(pos, pos + seq_len)
            loss, grads, state = split(model.loss_and_grads, X[chunk], Y[chunk], state)
            pos += seq_len
            if clip_value is not None:
                clip_grad_value(grads, clip_value)
            if clip_norm is not None:
                clip_grad_norm(grads, clip_norm)
            opt.step(grads)
            result.losses.append(loss)
            if callback is not None:
                callback(step, loss, model)
    return result


def evaluate(model: NumpyCharLM, text: str, *, seq_len: int = 100, batch_size: int = 16) -> float:
    """Mean cross-entropy (nats per character) of ``model`` on ``text``, state carried across chunks."""
    X, Y = stream_batches(model.encode(text), batch_size, seq_len)
    total, count, state = 0.0, 0, None
    for pos in range(0, len(X), seq_len):
        logits, state, _ = model.forward(X[pos : pos + seq_len], state)
        loss, _ = cross_entropy_forward(logits, Y[pos : pos + seq_len], reduction="sum")
        total += loss
        count += Y[pos : pos + seq_len].size
    return total / count


# The names before the textbook/tuned split: CharLM was the tuned model (fast layers, fused head)
__getattr__ = renamed(__name__, {
    "CharLM": "rnnkit.scratch.fast:FastNumpyCharLM",
    "train": "rnnkit.scratch.charlm:fit",
    "TrainResult": "rnnkit.scratch.charlm:FitResult",
})
