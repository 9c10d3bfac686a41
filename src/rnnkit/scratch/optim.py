"""Optimisers (SGD with momentum, Adagrad, Adam) and gradient clipping, in NumPy.

Each optimiser holds the live parameter arrays by name (``model.parameters()``) and updates them in
place on ``step(grads)``, where ``grads`` is keyed the same way (a missing name is skipped, like a
parameter whose ``.grad`` is None). The update rules are torch.optim's, step for step:

    SGD:      dp += wd p;  b = μ b + dp (b = dp at first);  p -= lr (dp + μ b if nesterov else b)
    Adagrad:  dp += wd p;  s += dp^2;  p -= lr / (1 + (t-1) decay) * dp / (sqrt(s) + eps)
    Adam:     dp += wd p;  m = β1 m + (1-β1) dp;  v = β2 v + (1-β2) dp^2
              p -= lr / (1 - β1^t) * m / (sqrt(v) / sqrt(1 - β2^t) + eps)

dp is the gradient of the loss with respect to p (docs/bptt.md's notation).

References: Polyak 1964 (momentum); Duchi, Hazan & Singer 2011 (Adagrad); Kingma & Ba 2015 (Adam).
"""

from __future__ import annotations

import math

import numpy as np

from rnnkit.checks import check_range


class Optimizer:
    """Base: keeps the parameters and a step count; subclasses implement ``_update``."""

    def __init__(self, params: dict[str, np.ndarray], lr: float):
        if not isinstance(params, dict) or not params:
            raise TypeError(
                "params must be a non-empty dict of name -> array (model.parameters()). "
                f"Expected a dict, got {type(params).__name__}"
            )
        check_range("lr", lr, 0, math.inf)
        self.params = params
        self.lr = lr
        # per-parameter state, as torch: a parameter skipped on a step does not advance its count
        self.state: dict[str, dict] = {name: {"step": 0} for name in params}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        unknown = [k for k in grads if k not in self.params]
        if unknown:
            raise KeyError(f"gradients for unknown parameters: {unknown}")
        for name, dp in grads.items():
            p = self.params[name]
            if dp.shape != p.shape:
                raise ValueError(f"gradient for {name} must have shape {p.shape}, got {dp.shape}")
            self.state[name]["step"] += 1
            self._update(p, np.asarray(dp, dtype=p.dtype), self.state[name])

    def _update(self, p, dp, state):
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and weight decay."""

    def __init__(self, params, lr=1e-2, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        if nesterov and momentum <= 0:
            raise ValueError("nesterov momentum needs momentum > 0")
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov

    def _update(self, p, dp, state):
        if self.weight_decay:
            dp = dp + self.weight_decay * p
        if self.momentum:
            buf = state.get("momentum")
            if buf is None:
                buf = state["momentum"] = dp.copy()
            else:
                buf *= self.momentum
                buf += dp
            dp = dp + self.momentum * buf if self.nesterov else buf
        p -= self.lr * dp


class Adagrad(Optimizer):
    """Adagrad: per-entry step sizes lr / sqrt(sum of squared gradients)."""

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                 initial_accumulator_value=0.0):
        super().__init__(params, lr)
        self.lr_decay, self.weight_decay, self.eps = lr_decay, weight_decay, eps
        self.initial_accumulator_value = initial_accumulator_value

    def _update(self, p, dp, state):
        if self.weight_decay:
            dp = dp + self.weight_decay * p
        s = state.get("sum")
        if s is None:
            s = state["sum"] = np.full_like(p, self.initial_accumulator_value)
        s += np.square(dp)
        clr = self.lr / (1 + (state["step"] - 1) * self.lr_decay)
        # the same operations as p -= clr * dp / (sqrt(s) + eps), in two scratch arrays
        step, den = np.multiply(dp, clr), np.sqrt(s)
        den += self.eps
        np.divide(step, den, out=step)
        p -= step


class Adam(Optimizer):
    """Adam with bias correction (and L2 weight decay added to the gradient, as torch.optim.Adam)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        self.beta1, self.beta2 = betas
        self.eps, self.weight_decay = eps, weight_decay

    def _update(self, p, dp, state):
        if self.weight_decay:
            dp = dp + self.weight_decay * p
        if "m" not in state:
            state["m"], state["v"] = np.zeros_like(p), np.zeros_like(p)
        m, v = state["m"], state["v"]
        # in place, with two scratch arrays: the same operations as the formulas above
        tmp = np.multiply(dp, 1 - self.beta1)
        m *= self.beta1
        m += tmp
        np.multiply(dp, 1 - self.beta2, out=tmp)
        tmp *= dp
        v *= self.beta2
        v += tmp
        bc1 = 1 - self.beta1 ** state["step"]
        bc2 = 1 - self.beta2 ** state["step"]
        den = np.sqrt(v)
        den /= np.sqrt(bc2)
        den += self.eps
        np.multiply(m, self.lr / bc1, out=tmp)
        tmp /= den
        p -= tmp


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients in place so their global 2-norm is at most ``max_norm``.

    Returns the norm before clipping. As torch.nn.utils.clip_grad_norm_: the scale is
    min(1, max_norm / (norm + 1e-6)).
    """
    total = float(np.sqrt(sum(float(np.vdot(dp, dp)) for dp in grads.values())))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for dp in grads.values():
            dp *= coef
    return total


def clip_grad_value(grads: dict[str, np.ndarray], clip_value: float) -> None:
    """Clip every gradient entry in place to [-clip_value, clip_value] (min-char-rnn clips at 5)."""
    for dp in grads.values():
        # two ufuncs instead of np.clip, whose Python wrapper costs more than the work here
        np.minimum(dp, clip_value, out=dp)
        np.maximum(dp, -clip_value, out=dp)
