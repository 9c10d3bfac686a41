"""Sequence layers in NumPy: multi-layer, bidirectional RNN / LSTM / GRU with full BPTT.

The layer owns time, layers and directions; the cell files own one recurrence. For each layer l and
direction d (d = 1 runs on the time-reversed sequence):

    gx = x W_ih^T + b_ih                    one matmul over all T*B rows           (T, B, G*H)
    hs, state_T = recur(gx, state_0)        the step-by-step loop (cell file)       (T, B, H_out)
    output_l = [hs_fwd, reverse_T(hs_bwd)]  input of layer l+1                      (T, B, D*H_out)

and backward runs the same in reverse order: ``recur_backward`` gives d gx, then
dW_ih = d gx^T x and d x = d gx W_ih, again one matmul each over all T*B rows.

Parameters and states follow torch.nn exactly: ``weight_ih_l{k}{suffix}`` (G*H, I_k),
``weight_hh_l{k}{suffix}`` (G*H, H_out), ``bias_ih_l{k}{suffix}``, ``bias_hh_l{k}{suffix}`` (G*H,),
``weight_hr_l{k}{suffix}`` (P, H) for a projected LSTM; suffix ``_reverse`` for d = 1; G = 1 (RNN),
4 (LSTM, gates i f g o), 3 (GRU, gates r z n); I_k = D*H_out for k > 0; h (L*D, B, H_out),
c (L*D, B, H); H_out = P if proj_size > 0 else H.

Inputs are float arrays (T, B, I) or, for the first layer, integer arrays (T, B) of indices in
[0, I): the same as a one-hot input, computed as a column lookup in W_ih.
"""

from __future__ import annotations

import numpy as np

from rnnkit.scratch.gru_cell import gru_recur, gru_recur_backward
from rnnkit.scratch.lstm_cell import lstm_recur, lstm_recur_backward
from rnnkit.scratch.module import Module, check_size, to_numpy
from rnnkit.scratch.ops import sum_rows
from rnnkit.scratch.rnn_cell import _check_nonlinearity, rnn_recur, rnn_recur_backward


class Recurrent(Module):
    """Shared machinery of :class:`RNN`, :class:`LSTM`, :class:`GRU`; subclasses give the cell."""

    gates = 1  # G: blocks of H rows in W_ih, W_hh

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bidirectional: bool = False,
        bias: bool = True,
        proj_size: int = 0,
        dtype=np.float64,
        seed=None,
    ):
        super().__init__(dtype)
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        self.proj_size = check_size("proj_size", proj_size, minimum=0)
        if self.proj_size >= self.hidden_size:
            raise ValueError(
                f"proj_size must be smaller than hidden_size. Expected < {hidden_size}, got {proj_size}"
            )
        for name, value in (("bidirectional", bidirectional), ("bias", bias)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool. Expected True or False, got {value!r}")
        self.bidirectional = bool(bidirectional)
        self.bias = bool(bias)
        self.num_directions = 2 if self.bidirectional else 1
        H, G = self.hidden_size, self.gates
        H_out = self.proj_size or H
        self.output_size = H_out  # per direction
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(H)  # torch: every parameter ~ U(-1/sqrt(H), 1/sqrt(H))
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else H_out * self.num_directions
            for suffix in self._suffixes():
                shapes = {"weight_ih": (G * H, in_size), "weight_hh": (G * H, H_out)}
                if self.bias:
                    shapes.update(bias_ih=(G * H,), bias_hh=(G * H,))
                if self.proj_size:
                    shapes["weight_hr"] = (self.proj_size, H)
                for base, shape in shapes.items():
                    name = f"{base}_l{layer}{suffix}"
                    self._params[name] = rng.uniform(-bound, bound, shape).astype(self.dtype)

    def _suffixes(self):
        return ("", "_reverse")[: self.num_directions]

    def _layer_params(self, layer: int, direction: int) -> dict[str, np.ndarray]:
        """The parameters of one (layer, direction) under cell names (weight_ih, ..., weight_hr)."""
        tail = f"_l{layer}{self._suffixes()[direction]}"
        return {n[: -len(tail)]: p for n, p in self._params.items() if n.endswith(tail)}

    def __repr__(self):
        extra = "".join(
            f", {k}={v!r}"
            for k, v, default in [
                ("num_layers", self.num_layers, 1),
                ("bias", self.bias, True),
                ("bidirectional", self.bidirectional, False),
                ("proj_size", self.proj_size, 0),
                ("dtype", self.dtype.name, "float64"),
            ]
            if v != default
        )
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra})"

    # -- the cell, given by subclasses --------------------------------------------------------

    def _recur(self, gx, state0, p):  # -> (hs (T, B, H_out), state_T, cache)
        raise NotImplementedError

    def _recur_backward(self, d_hs, d_state_T, cache):  # -> (d_gx, d_state0, grads)
        raise NotImplementedError

    # -- states: RNN and GRU have h, LSTM has (h, c); subclasses with two parts override --------

    def initial_state(self, batch_size: int):
        """The zero state for a batch: h (L*D, B, H_out) (LSTM: the pair (h, c))."""
        return np.zeros((self.num_layers * self.num_directions, batch_size, self.output_size), self.dtype)

    def _check_state(self, hx, batch_size):
        expected = (self.num_layers * self.num_directions, batch_size, self.output_size)
        return _state_array("hx", hx, expected, self.dtype)

    def _split_state(self, hx, k):  # state of (layer, direction) number k
        return hx[k]

    def _stack_states(self, states):
        return np.stack(states)

    # -- forward and backward -----------------------------------------------------------------

    def forward(self, x, hx=None):
        """Run all layers and directions over x (T, B, I) floats or (T, B) indices.

        Returns (output (T, B, D*H_out), h_n, cache): h_n (L*D, B, H_out), or (h_n, c_n) for LSTM.
        """
        x, is_index = self._check_input(x)
        T, B = x.shape[:2]
        hx = self.initial_state(B) if hx is None else self._check_state(hx, B)
        D, H_out = self.num_directions, self.output_size
        layer_in, finals, caches = x, [], []
        for layer in range(self.num_layers):
            per_dir, outs = [], []
            for d in range(D):
                p = self._layer_params(layer, d)
                xd = layer_in if d == 0 else np.ascontiguousarray(layer_in[::-1])
                gx = self._project(xd, p, is_index and layer == 0)  # (T, B, G*H)
                hs, state_T, cache = self._recur(gx, self._split_state(hx, layer * D + d), p)
                finals.append(state_T)
                outs.append(hs if d == 0 else hs[::-1])
                per_dir.append((xd, cache))
            caches.append(per_dir)
            layer_in = outs[0] if D == 1 else np.concatenate(outs, axis=2)  # (T, B, D*H_out)
        cache = {"caches": caches, "is_index": is_index, "shape": (T, B), "out": layer_in}
        assert layer_in.shape == (T, B, D * H_out)
        return layer_in, self._stack_states(finals), cache

    __call__ = forward

    def backward(self, d_output, cache, d_h_n=None):
        """Backpropagate through time. d_output (T, B, D*H_out) or None; d_h_n like h_n or None.

        Returns (d_x (T, B, I), or None for index inputs; d_hx like hx; grads keyed like the state
        dict).
        """
        T, B = cache["shape"]
        D, H_out = self.num_directions, self.output_size
        if d_output is not None:
            d_output = to_numpy(d_output)
            if d_output.shape != cache["out"].shape:
                raise ValueError(
                    f"d_output must have the output's shape. Expected {cache['out'].shape}, "
                    f"got {d_output.shape}"
                )
        d_finals = self._final_grads(d_h_n, B)
        grads, d_hx = {}, [None] * (self.num_layers * D)
        d_out = d_output
        for layer in range(self.num_layers - 1, -1, -1):
            index_input = cache["is_index"] and layer == 0
            d_in = None
            for d in range(D):
                xd, kcache = cache["caches"][layer][d]
                p = self._layer_params(layer, d)
                d_hs = None
                if d_out is not None:
                    d_hs = d_out[:, :, d * H_out : (d + 1) * H_out]
                    d_hs = d_hs if d == 0 else d_hs[::-1]  # the reverse direction runs backwards
                k = layer * D + d
                d_gx, d_hx[k], g = self._recur_backward(d_hs, d_finals[k], kcache)
                flat = d_gx.reshape(T * B, -1)  # (T*B, G*H)
                suffix = f"_l{layer}{self._suffixes()[d]}"
                if index_input:  # one-hot rows: dW_ih[:, v] = sum of d gx over the steps with x = v
                    g["weight_ih"] = _scatter_columns(xd.reshape(-1), flat, self.input_size)
                else:
                    g["weight_ih"] = flat.T @ xd.reshape(T * B, -1)  # (G*H, I_l)
                    dx = (flat @ p["weight_ih"]).reshape(T, B, -1)  # (T, B, I_l)
                    dx = dx if d == 0 else dx[::-1]
                    d_in = dx if d_in is None else d_in + dx
                if self.bias:
                    g["bias_ih"] = sum_rows(flat)
                for base, value in g.items():
                    grads[base + suffix] = value
            d_out = d_in
        ordered = {name: grads[name] for name in self._params}
        return d_out, self._stack_d_states(d_hx), ordered

    # -- helpers ------------------------------------------------------------------------------

    def _check_input(self, x):
        x = to_numpy(x)
        if x.ndim == 2 and np.issubdtype(x.dtype, np.integer):
            if x.size and (x.min() < 0 or x.max() >= self.input_size):
                raise ValueError(
                    f"index input must lie in [0, input_size). Expected values in [0, "
                    f"{self.input_size}), got min {x.min()}, max {x.max()}"
                )
            is_index = True
        elif x.ndim == 3:
            if x.shape[2] != self.input_size:
                raise ValueError(
                    f"input.shape[-1] must be equal to input_size. Expected {self.input_size}, "
                    f"got {x.shape[2]}"
                )
            x = np.asarray(x, dtype=self.dtype)
            is_index = False
        else:
            raise ValueError(
                "input must be a float array (T, B, I) or an integer index array (T, B). "
                f"Expected 3 dimensions (or 2 for indices), got shape {x.shape} of {x.dtype}"
            )
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"input must have T >= 1 and B >= 1, got shape {x.shape}")
        return x, is_index

    def _project(self, xd, p, is_index):
        """gx = x W_ih^T + b_ih for every step at once: (T, B, G*H)."""
        T, B = xd.shape[:2]
        if is_index:
            gx = np.ascontiguousarray(p["weight_ih"].T)[xd]  # (T, B, G*H): row lookup = one-hot matmul
        else:
            gx = (xd.reshape(T * B, -1) @ p["weight_ih"].T).reshape(T, B, -1)
        if self.bias:
            gx += p["bias_ih"]
        return gx

    def _final_grads(self, d_h_n, batch_size):
        if d_h_n is None:
            return [None] * (self.num_layers * self.num_directions)
        d = self._check_state(d_h_n, batch_size)
        return [d[k] for k in range(len(d))]

    def _stack_d_states(self, d_states):
        return np.stack(d_states)


def _scatter_columns(idx, rows, size):
    """W (G, size) with W[:, v] = sum of rows[n] over n with idx[n] = v, i.e. rows^T @ one_hot(idx).

    A small vocabulary takes the dense one-hot product (one BLAS call); a large one sorts the
    indices and sums runs (np.add.reduceat), which does not grow with the vocabulary. Both are
    much faster than np.add.at.
    """
    if size <= 1024:
        one_hot = np.zeros((len(idx), size), rows.dtype)  # (N, V)
        one_hot[np.arange(len(idx)), idx] = 1
        return rows.T @ one_hot  # (G, V)
    order = np.argsort(idx, kind="stable")
    sorted_idx = idx[order]
    starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
    w_t = np.zeros((size, rows.shape[1]), rows.dtype)  # (size, G)
    w_t[sorted_idx[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return np.ascontiguousarray(w_t.T)


def _state_array(name, value, expected, dtype):
    array = np.asarray(to_numpy(value), dtype=dtype)
    if array.shape != expected:
        raise ValueError(f"Expected {name} size {expected}, got {tuple(array.shape)}")
    return array


class RNN(Recurrent):
    """Elman RNN layers: h_t = f(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), f = tanh or relu.

    Same parameters and shapes as torch.nn.RNN; see :mod:`rnnkit.scratch.rnn_cell` for the cell.
    """

    gates = 1

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        *,
        bidirectional=False,
        bias=True,
        nonlinearity="tanh",
        dtype=np.float64,
        seed=None,
    ):
        _check_nonlinearity(nonlinearity)
        self.nonlinearity = nonlinearity
        super().__init__(
            input_size, hidden_size, num_layers, bidirectional=bidirectional, bias=bias, dtype=dtype,
            seed=seed,
        )

    def _recur(self, gx, h0, p):
        hs, cache = rnn_recur(gx, h0, p["weight_hh"], p.get("bias_hh"), self.nonlinearity)
        return hs, hs[-1], cache

    def _recur_backward(self, d_hs, d_hT, cache):
        return rnn_recur_backward(d_hs, d_hT, cache)


class GRU(Recurrent):
    """GRU layers (gates r, z, n; n = tanh(W_in x + b_in + r * (W_hn h + b_hn))), as torch.nn.GRU.

    See :mod:`rnnkit.scratch.gru_cell` for the cell and its backward.
    """

    gates = 3

    def __init__(
        self, input_size, hidden_size, num_layers=1, *, bidirectional=False, bias=True,
        dtype=np.float64, seed=None,
    ):
        super().__init__(
            input_size, hidden_size, num_layers, bidirectional=bidirectional, bias=bias, dtype=dtype,
            seed=seed,
        )

    def _recur(self, gx, h0, p):
        hs, cache = gru_recur(gx, h0, p["weight_hh"], p.get("bias_hh"))
        return hs, hs[-1], cache

    def _recur_backward(self, d_hs, d_hT, cache):
        return gru_recur_backward(d_hs, d_hT, cache)


class LSTM(Recurrent):
    """LSTM layers (gates i, f, g, o; optional projection h = m W_hr^T), as torch.nn.LSTM.

    The state is the pair (h, c): h (L*D, B, H_out), c (L*D, B, H); ``forward`` returns
    (output, (h_n, c_n), cache) and ``backward`` takes d_h_n = (d_h_n, d_c_n), either part may be
    None. See :mod:`rnnkit.scratch.lstm_cell` for the cell and its backward.
    """

    gates = 4

    def __init__(
        self, input_size, hidden_size, num_layers=1, *, bidirectional=False, bias=True, proj_size=0,
        dtype=np.float64, seed=None,
    ):
        super().__init__(
            input_size, hidden_size, num_layers, bidirectional=bidirectional, bias=bias,
            proj_size=proj_size, dtype=dtype, seed=seed,
        )

    def initial_state(self, batch_size):
        n = self.num_layers * self.num_directions
        return (
            np.zeros((n, batch_size, self.output_size), self.dtype),
            np.zeros((n, batch_size, self.hidden_size), self.dtype),
        )

    def _check_state(self, hx, batch_size):
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise ValueError(f"LSTM state must be a pair (h, c). Expected a tuple of 2, got {type(hx).__name__}")
        n = self.num_layers * self.num_directions
        h, c = hx
        zero_h, zero_c = self.initial_state(batch_size)
        h = zero_h if h is None else _state_array("hx[0]", h, (n, batch_size, self.output_size), self.dtype)
        c = zero_c if c is None else _state_array("hx[1]", c, (n, batch_size, self.hidden_size), self.dtype)
        return h, c

    def _split_state(self, hx, k):
        return hx[0][k], hx[1][k]

    def _stack_states(self, states):
        return np.stack([s[0] for s in states]), np.stack([s[1] for s in states])

    def _final_grads(self, d_h_n, batch_size):
        if d_h_n is None:
            return [(None, None)] * (self.num_layers * self.num_directions)
        dh, dc = self._check_state(d_h_n, batch_size)
        return [(dh[k], dc[k]) for k in range(len(dh))]

    def _stack_d_states(self, d_states):
        return self._stack_states(d_states)

    def _recur(self, gx, state0, p):
        hs, state_T, cache = lstm_recur(gx, state0[0], state0[1], p["weight_hh"], p.get("bias_hh"), p.get("weight_hr"))
        return hs, state_T, cache

    def _recur_backward(self, d_hs, d_state_T, cache):
        return lstm_recur_backward(d_hs, d_state_T[0], d_state_T[1], cache)
