"""Two engines behind one interface: PyTorch (autograd, any device, DDP, bf16) and NumPy (rnnkit.scratch).

The training loop (`rnnkit.train.loop`) only calls

    loss, grad_norm = engine.train_step(x, y, reset)   forward + backward on one (T, B) window;
                                                        gradients clipped; parameters untouched
    engine.apply(lr)                                    one AdamW update
    nll_sum, count = engine.evaluate(ids)               stateful pass over a split, no updates
    engine.weights() / load_weights(...)                the torch CharLM state_dict
    engine.training_state() / load_training_state(...) optimizer, carried state, RNG

AdamW (Loshchilov & Hutter 2019) decays only the matrices (embedding, weight_ih, weight_hh, head),
not the biases: p <- p (1 - lr wd), then the Adam step. The carried recurrent state is that of the
streams this process owns; ``training_state`` gathers all streams so a checkpoint holds them all.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.streams import Streams
from rnnkit.data.vocab import Vocab
from rnnkit.models.charlm import CharLM, detach_state, loss_fn
from rnnkit.train import distributed
from rnnkit.train.checkpoint import CheckpointError, load_into
from rnnkit.train.config import TrainConfig
from rnnkit.train.distributed import DistInfo


def eval_layout(n_ids: int) -> tuple[int, int]:
    """(streams, window) for a one-pass evaluation of n_ids ids: up to 64 streams of 256 steps."""
    streams = max(1, min(64, n_ids - 1))
    return streams, max(1, min(256, (n_ids - 1) // streams))


def eval_predictions(n_ids: int) -> int:
    """How many predictions that pass scores: every stream's B L of them (see Streams.one_pass)."""
    streams, _ = eval_layout(n_ids)
    return streams * ((n_ids - 1) // streams)


class TorchEngine:
    def __init__(self, model: CharLM, cfg: TrainConfig, device: torch.device, info: DistInfo):
        self.dtype = torch.float64 if cfg.precision == "fp64" else torch.float32
        self.model = model.to(device=device, dtype=self.dtype)
        self.cfg, self.device, self.info = cfg, device, info
        self.net = model
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=(0.9, 0.99),
        )
        self.amp = cfg.precision == "bf16"
        self.state: tuple[Tensor, ...] | None = None  # carried across windows, this rank's streams

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def train_step(self, x: np.ndarray, y: np.ndarray, reset: bool) -> tuple[float, float]:
        xb = torch.from_numpy(x).to(self.device)
        yb = torch.from_numpy(y).to(self.device)
        if reset or self.state is None:
            self.state = self.model.initial_state(xb.size(1), self.device)
        self.model.train()
        with self._autocast():
            logits, state = self.net(xb, self.state)  # (T, B, V)
        loss = loss_fn(logits, yb)  # float32 even under bf16 autocast
        # the next window starts where this one ended, but gradients stop here (truncated BPTT)
        self.state = tuple(s.to(self.dtype) for s in detach_state(state))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # under DDP this also averages gradients across processes
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        return loss.item(), norm.item()

    def apply(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()

    @torch.no_grad()
    def evaluate(self, ids: np.ndarray, progress=None) -> tuple[float, int]:
        """Sum of -log p over one stateful pass of ``ids``, and the number of predictions.

        In float32 (float64 for fp64 runs), so reported losses do not depend on bf16 training.
        """
        was_training = self.model.training
        self.model.eval()
        try:
            return evaluate_model(self.model, ids, self.device, progress)
        finally:
            self.model.train(was_training)

    def weights(self) -> dict[str, Tensor]:
        return self.model.state_dict()

    def load_weights(self, weights: dict[str, Tensor], source: Path) -> None:
        load_into(self.model, weights, source)

    def training_state(self) -> dict:
        """Optimizer, carried state of all streams (a collective under DDP), RNG states."""
        carried = [distributed.gather_streams(s, self.info).cpu() for s in self.state or ()]
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"optimizer": self.opt.state_dict(), "carried": carried, "rng": rng}

    def load_training_state(self, state: dict) -> None:
        try:
            self.opt.load_state_dict(state["optimizer"])
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"the optimizer state does not fit this model: {err}") from None
        self.state = self._local_streams(state.get("carried") or [])
        rng = state.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)

    def _local_streams(self, carried: list[Tensor]) -> tuple[Tensor, ...] | None:
        if not carried:
            return None
        per_rank = carried[0].size(1) // self.info.world_size
        lo = self.info.rank * per_rank
        return tuple(s[:, lo : lo + per_rank].to(self.device, self.dtype) for s in carried)


@torch.no_grad()
def evaluate_model(model: CharLM, ids: np.ndarray, device: torch.device,
                   progress=None) -> tuple[float, int]:
    """(sum of -log p in nats, number of predictions) over one stateful pass of ``ids``.

    ``progress``: a `rnnkit.train.progress.WorkProgress` told the predictions scored.
    """
    B, T = eval_layout(len(ids))
    total, count, state = 0.0, 0, None
    for batch in Streams(ids, B, T, shift=False).one_pass():
        x = torch.from_numpy(batch.x).to(device)
        y = torch.from_numpy(batch.y).to(device)
        logits, state = model(x, state)
        total += loss_fn(logits, y, reduction="sum").item()
        count += y.numel()
        if progress is not None:
            progress.update(y.numel())
    return total, count


class NumpyEngine:
    """The same loop on `rnnkit.scratch.fast.FastNumpyCharLM` (the speed-tuned NumPy engine,
    tied to the textbook ``rnnkit.scratch`` by tests/scratch/fast): one-hot input, hand-written BPTT."""

    def __init__(self, vocab: Vocab, cfg: TrainConfig):
        from rnnkit.scratch.fast import BatchSplit, FastNumpyCharLM
        from rnnkit.scratch.optim import Adam

        self.cfg = cfg
        self.model = FastNumpyCharLM(vocab.chars, cfg.hidden_size, cell=cfg.cell,
                                     num_layers=cfg.num_layers, dtype=np.float32, seed=cfg.seed)
        self.params = self.model.parameters()
        # torch.optim.AdamW = decoupled decay (in apply) + Adam without weight decay
        self.opt = Adam(self.params, lr=cfg.lr, betas=(0.9, 0.99))
        self.grads: dict[str, np.ndarray] = {}
        self.state = None
        self.split = BatchSplit(cfg.numpy_threads)  # numpy_threads = 1: the plain call

    @staticmethod
    def torch_name(name: str) -> str:
        return {"weight_ho": "head.weight", "bias_ho": "head.bias"}.get(name, "rnn." + name)

    def train_step(self, x: np.ndarray, y: np.ndarray, reset: bool) -> tuple[float, float]:
        from rnnkit.scratch.optim import clip_grad_norm

        if reset:
            self.state = None
        loss, self.grads, self.state = self.split(self.model.loss_and_grads, x, y, self.state)
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        norm = clip_grad_norm(self.grads, clip)
        return float(loss), float(norm)

    def apply(self, lr: float) -> None:
        if self.cfg.weight_decay:
            for p in self.params.values():
                if p.ndim >= 2:
                    p *= 1.0 - lr * self.cfg.weight_decay
        self.opt.lr = lr
        self.opt.step(self.grads)

    def evaluate(self, ids: np.ndarray, progress=None) -> tuple[float, int]:
        from rnnkit.scratch.fast import cross_entropy_forward

        B, T = eval_layout(len(ids))
        total, count, state = 0.0, 0, None
        for batch in Streams(ids, B, T, shift=False).one_pass():
            logits, state, _ = self.model.forward(batch.x, state)
            loss, _ = cross_entropy_forward(logits, batch.y, reduction="sum")
            total += float(loss)
            count += batch.y.size
            if progress is not None:
                progress.update(batch.y.size)
        return total, count

    def weights(self) -> dict[str, Tensor]:
        return {self.torch_name(k): torch.from_numpy(v.copy()) for k, v in self.params.items()}

    def load_weights(self, weights: dict[str, Tensor], source: Path) -> None:
        names = {self.torch_name(k): k for k in self.params}
        if set(names) != set(weights) or any(
            tuple(weights[t].shape) != self.params[k].shape for t, k in names.items()
        ):
            raise CheckpointError(f"{source} does not hold weights for this NumPy model")
        self.model.load_state_dict({k: weights[t].numpy() for t, k in names.items()})

    def training_state(self) -> dict:
        opt = {}
        for name, s in self.opt.state.items():
            opt[name] = {"step": int(s["step"])}
            opt[name].update({k: torch.from_numpy(s[k].copy()) for k in ("m", "v") if k in s})
        state = self.state
        carried = [] if state is None else list(state if isinstance(state, tuple) else (state,))
        return {"optimizer": opt, "carried": [torch.from_numpy(np.array(s)) for s in carried]}

    def load_training_state(self, state: dict) -> None:
        opt = state.get("optimizer", {})
        if set(opt) != set(self.opt.state):
            raise CheckpointError("the optimizer state does not fit this NumPy model")
        for name, s in opt.items():
            self.opt.state[name] = {"step": int(s["step"]),
                                    **{k: s[k].numpy().copy() for k in ("m", "v") if k in s}}
        carried = [s.numpy().copy() for s in state.get("carried") or []]
        if not carried:
            self.state = None
        else:
            self.state = tuple(carried) if self.cfg.cell == "lstm" else carried[0]
