"""Sample text from an exported char LM with onnxruntime and NumPy alone (torch is not imported).

    python -m rnnkit.export.ort_sample runs/demo/model.onnx --prompt "The " --length 300 --seed 0

With the same seed it prints what ``rnnkit sample`` prints: the sampling of
`rnnkit.train.sampling` reproduced step for step.

* The distribution: ``softmax(logits / temperature)`` in float64, then the top-k and top-p cuts
  (nucleus: the most likely characters while the mass before them is below ``top_p``), renormalised.
* The draw: ``torch.multinomial(p, 1, generator)`` draws one exponential ``E_v = -log(1 - U_v)``
  per character and returns ``argmax(p_v / E_v)`` (the exponential race: the winner is ``v`` with
  probability ``p_v``). ``U_v`` are float64 uniforms from torch's CPU generator, the Mersenne
  Twister MT19937 seeded by ``init_genrand(seed mod 2^32)``: each uniform takes two 32-bit outputs
  ``a, b`` as ``((a << 32 | b) mod 2^53) / 2^53``. NumPy's ``MT19937`` produces the same 32-bit
  stream once its state is set the same way.

The model file must be an ``rnnkit export`` of a char-LM run: its metadata carry the vocabulary.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator

import numpy as np

from rnnkit.checks import check_sampling, errors_as
from rnnkit.data.text import CorpusError
from rnnkit.data.vocab import Vocab


class SamplingError(ValueError):
    """A sampling option out of range, or a model file that is not an exported char LM."""


class TorchCPURandom:
    """The stream of ``torch.Generator().manual_seed(seed)`` on CPU, in NumPy."""

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        key = np.zeros(624, dtype=np.uint32)
        key[0] = seed % 2**64 & 0xFFFFFFFF  # torch keeps the low 32 bits of the (uint64) seed
        for i in range(1, 624):  # MT19937's init_genrand, as torch's mt19937 seeds itself
            prev = int(key[i - 1])
            key[i] = (1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF
        self.bits = np.random.MT19937()
        self.bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": 624}}

    def uniform(self, n: int) -> np.ndarray:
        """n float64 uniforms in [0, 1), as ``torch.rand(n, dtype=torch.float64)`` draws them."""
        raw = self.bits.random_raw(2 * n).astype(np.uint64).reshape(n, 2)
        x = (raw[:, 0] << np.uint64(32)) | raw[:, 1]
        return (x & np.uint64((1 << 53) - 1)).astype(np.float64) * 2.0**-53

    def multinomial_one(self, p: np.ndarray) -> int:
        """``torch.multinomial(p, 1, generator)``: the exponential race over the V entries."""
        e = -np.log1p(-self.uniform(p.size))
        return int(np.argmax(p / e))


def check_options(vocab_size: int, temperature: float, top_k, top_p, length: int):
    """As `rnnkit.train.sampling.check_options` (the same check): returns top_k capped at the
    vocabulary."""
    with errors_as(SamplingError):
        return check_sampling(vocab_size, temperature, top_k, top_p, length)


def filter_probs(logits: np.ndarray, temperature: float, top_k=None, top_p=None) -> np.ndarray:
    """The distribution to draw from (V,): tempered softmax, top-k and top-p cuts, renormalised."""
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_k is not None and top_k < p.size:
        keep = np.zeros(p.size, dtype=bool)
        keep[np.argsort(-p, kind="stable")[:top_k]] = True
        p = np.where(keep, p, 0.0)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        sorted_p = p[order]
        before = np.cumsum(sorted_p) - sorted_p  # mass of the strictly more likely ones
        keep = np.zeros(p.size, dtype=bool)
        keep[order] = before < top_p * sorted_p.sum()  # the first always stays
        p = np.where(keep, p, 0.0)
    return p / p.sum()


class OnnxCharLM:
    """An exported char LM in an onnxruntime session: ``step(ids (T,), state) -> (logits, state)``."""

    def __init__(self, path: str) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # the optional inputs' defaults are meant; no warning
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types for missing or bad files
            raise SamplingError(f"cannot load {path}: {str(err).strip().splitlines()[0]}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "rnnkit.vocab" not in meta:
            raise SamplingError(f"{path} is not an exported rnnkit char LM (no vocabulary in its "
                                "metadata); export one with `rnnkit export RUN_DIR --format onnx`")
        self.vocab = Vocab.from_json(meta["rnnkit.vocab"])
        self.streaming = json.loads(meta.get("rnnkit.streaming", "false"))
        roles = json.loads(meta["rnnkit.inputs"])
        self.state_names = [n for n, r in roles.items() if r == "state"]
        self.x_name = next(n for n, r in roles.items() if r == "data")

    def step(self, ids: np.ndarray, state: list[np.ndarray] | None):
        """ids (T,) -> (logits of the last step (V,), new state)."""
        if self.streaming:  # one character per call
            for i in ids:
                logits, state = self._run(np.array([i], dtype=np.int64), state)
            return logits[0], state
        logits, state = self._run(ids.reshape(-1, 1).astype(np.int64), state)  # (T, 1, V)
        return logits[-1, 0], state

    def _run(self, x: np.ndarray, state):
        feeds = {self.x_name: x}
        if state is not None:
            feeds |= dict(zip(self.state_names, state))
        logits, *state = self.session.run(None, feeds)
        return logits, state


def generate(model: OnnxCharLM, prompt: str, length: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None) -> Iterator[str]:
    """Yield ``length`` characters continuing ``prompt``, as `rnnkit.train.generate` does."""
    top_k = check_options(len(model.vocab), temperature, top_k, top_p, length)
    if not prompt:
        raise SamplingError("the prompt must hold at least one character")
    ids = model.vocab.encode(prompt, "the prompt")
    rng = TorchCPURandom(seed)
    logits, state = model.step(ids, None)
    for _ in range(length):
        if temperature == 0:
            nxt = int(np.argmax(logits))
        else:
            nxt = rng.multinomial_one(filter_probs(logits, temperature, top_k, top_p))
        yield model.vocab.chars[nxt]
        logits, state = model.step(np.array([nxt]), state)


def default_prompt(vocab: Vocab) -> str:
    """A newline when the vocabulary has one, else its first character (as rnnkit sample)."""
    return "\n" if "\n" in vocab.chars else vocab.chars[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rnnkit.export.ort_sample",
                                description="Sample from an exported char LM with onnxruntime.")
    p.add_argument("model", help="an ONNX file from `rnnkit export RUN_DIR --format onnx`")
    p.add_argument("--prompt", default=None, help="text to continue (default: a newline)")
    p.add_argument("--length", type=int, default=500, help="characters to generate")
    p.add_argument("--temperature", type=float, default=1.0, help="0 is greedy (default 1.0)")
    p.add_argument("--top-k", type=int, default=None, help="draw from the k most likely only")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    args = p.parse_args(argv)
    try:
        model = OnnxCharLM(args.model)
        prompt = args.prompt if args.prompt else default_prompt(model.vocab)
        pieces = generate(model, prompt, args.length, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, seed=args.seed)
        first = next(pieces, "")  # options and prompt are checked before anything is printed
        sys.stdout.write(prompt + first)
        for ch in pieces:
            sys.stdout.write(ch)
            sys.stdout.flush()
        sys.stdout.write("\n")
    except (SamplingError, CorpusError) as err:
        print(f"ort_sample: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
