"""Sampling text from a trained model, one character at a time (temperature, top-k, nucleus).

    p = softmax(logits / temperature)      temperature 0: argmax (greedy)
    top-k: keep the k most likely characters (Fan et al. 2018)
    top-p: keep the smallest set of most likely characters whose probability sums to >= p
           (nucleus sampling, Holtzman et al. 2020)
    then renormalise and draw.

The prompt is read in one pass to set the recurrent state; then each drawn character is fed back,
one step at a time, carrying the state, so generating n characters costs n single steps.
"""

# ruff: noqa: F722 (jaxtyping shape strings such as "T B" are not Python expressions)
from __future__ import annotations

from collections.abc import Iterator

import torch
from jaxtyping import Float
from torch import Tensor

from rnnkit.checks import check_sampling, errors_as
from rnnkit.data.vocab import Vocab
from rnnkit.models.charlm import CharLM


class SamplingError(ValueError):
    """A sampling option out of range: the message names the flag, expected and got."""


def check_options(vocab_size: int, temperature: float, top_k: int | None,
                  top_p: float | None, length: int) -> int | None:
    """Validate; returns top_k capped at the vocabulary size."""
    with errors_as(SamplingError):
        return check_sampling(vocab_size, temperature, top_k, top_p, length)


def filter_probs(logits: Float[Tensor, " V"], temperature: float, top_k: int | None = None,
                 top_p: float | None = None) -> Float[Tensor, " V"]:
    """The distribution to draw from: tempered softmax, then top-k and top-p cuts, renormalised."""
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    if top_k is not None and top_k < probs.numel():
        keep = torch.zeros_like(probs, dtype=torch.bool)
        keep[torch.topk(probs, top_k).indices] = True  # exactly k, even with ties
        probs = torch.where(keep, probs, torch.zeros_like(probs))
    if top_p is not None and top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_p, 0) - sorted_p  # mass of the strictly more likely ones
        keep_sorted = before < top_p * sorted_p.sum()  # the first always stays
        keep = torch.zeros_like(keep_sorted).scatter(0, order, keep_sorted)
        probs = torch.where(keep, probs, torch.zeros_like(probs))
    return probs / probs.sum()


@torch.no_grad()
def generate(model: CharLM, vocab: Vocab, prompt: str, length: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None) -> Iterator[str]:
    """Yield ``length`` characters continuing ``prompt`` (which must be non-empty and in ``vocab``)."""
    top_k = check_options(len(vocab), temperature, top_k, top_p, length)
    if not prompt:
        raise SamplingError("the prompt must hold at least one character")
    ids = torch.from_numpy(vocab.encode(prompt, "the prompt"))
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    model.eval()
    logits, state = model(ids.view(-1, 1).to(device))  # (T, 1, V)
    for _ in range(length):
        last = logits[-1, 0].float().cpu()  # (V,)
        if temperature == 0:
            nxt = int(torch.argmax(last))
        else:
            probs = filter_probs(last, temperature, top_k, top_p)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        yield vocab.chars[nxt]
        logits, state = model(torch.tensor([[nxt]], device=device), state)


def default_prompt(vocab: Vocab) -> str:
    """A newline when the vocabulary has one (texts start lines), else its first character."""
    return "\n" if "\n" in vocab.chars else vocab.chars[0]
