"""What every recurrent layer in rnnkit.scratch shares: torch.nn's parameters and states, the input
checks, and the walk over layers and directions.

The walk, for each layer l and direction d (d = 1 reads the time-reversed sequence):

    hs, state_T = run_direction(x_l, state_0)        one direction of one layer      (T, B, H_out)
    x_{l+1} = [hs_fwd, reverse_T(hs_bwd)]             the next layer's input          (T, B, D*H_out)

and backward walks the same in reverse: each direction's backward gives d x_l, and the two
directions' d x_l add (both read the same input). How one direction runs is the subclass's choice:
`rnnkit.scratch.recurrent_layers` calls the cell's step once per time step (the textbook
loop); `rnnkit.scratch.fast.loop_layers` runs the speed-tuned loops. Named after
torch.nn.RNNBase, which plays the same part for torch.nn.RNN / LSTM / GRU.

Parameters and states follow torch.nn exactly: ``weight_ih_l{k}{suffix}`` (G*H, I_k),
``weight_hh_l{k}{suffix}`` (G*H, H_out), ``bias_ih_l{k}{suffix}``, ``bias_hh_l{k}{suffix}`` (G*H,),
``weight_hr_l{k}{suffix}`` (P, H) for a projected LSTM; suffix ``_reverse`` for d = 1; G = 1 (RNN),
4 (LSTM, gates i f g o), 3 (GRU, gates r z n); I_k = D*H_out for k > 0; h (L*D, B, H_out),
c (L*D, B, H); H_out = P if proj_size > 0 else H. Inputs are float arrays (T, B, I) or, for the
first layer, integer arrays (T, B) of indices in [0, I), standing for one-hot vectors.
"""

from __future__ import annotations

import numpy as np

from rnnkit.scratch.module import Module, check_flag, check_size, to_numpy


class RNNBase(Module):
    """Parameters, states and the layer/direction walk of RNN, LSTM, GRU; subclasses run a direction."""

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
        self.bidirectional = check_flag("bidirectional", bidirectional)
        self.bias = check_flag("bias", bias)
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

    # -- one direction of one layer, run by subclasses -----------------------------------------

    def _run_direction(self, x, state0, p, is_index):
        """x (T, B, I_l) floats or (T, B) indices; state0 of one (layer, direction); p its
        parameters under cell names. Returns (hs (T, B, H_out), state_T, cache)."""
        raise NotImplementedError

    def _run_direction_backward(self, d_hs, d_state_T, cache):
        """d_hs (T, B, H_out) or None; d_state_T like state_T or None (zero).
        Returns (d_x (T, B, I_l), or None for index inputs; d_state0; grads under cell names)."""
        raise NotImplementedError

    # -- states: RNN and GRU have h; LSTM, whose state is the pair (h, c), overrides these -----

    def initial_state(self, batch_size: int):
        """The zero state for a batch: h (L*D, B, H_out) (LSTM: the pair (h, c))."""
        return np.zeros((self.num_layers * self.num_directions, batch_size, self.output_size), self.dtype)

    def _check_state(self, hx, batch_size):
        expected = (self.num_layers * self.num_directions, batch_size, self.output_size)
        return state_array("hx", hx, expected, self.dtype)

    def _split_state(self, hx, k):  # state of (layer, direction) number k
        return hx[k]

    def _stack_states(self, states):
        return np.stack(states)

    def _final_grads(self, d_h_n, batch_size):
        """d_h_n split per (layer, direction); None (zero) for each when d_h_n is None."""
        if d_h_n is None:
            return [None] * (self.num_layers * self.num_directions)
        d = self._check_state(d_h_n, batch_size)
        return [self._split_state(d, k) for k in range(self.num_layers * self.num_directions)]

    # -- forward and backward: the walk over layers and directions -----------------------------

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
                state0 = self._split_state(hx, layer * D + d)
                hs, state_T, cache = self._run_direction(xd, state0, p, is_index and layer == 0)
                finals.append(state_T)
                outs.append(hs if d == 0 else hs[::-1])  # the reverse direction's, back in time order
                per_dir.append(cache)
            caches.append(per_dir)
            layer_in = outs[0] if D == 1 else np.concatenate(outs, axis=2)  # (T, B, D*H_out)
        cache = {"caches": caches, "shape": (T, B), "out_shape": layer_in.shape}
        assert layer_in.shape == (T, B, D * H_out)
        return layer_in, self._stack_states(finals), cache

    __call__ = forward

    def backward(self, d_output, cache, d_h_n=None):
        """Backpropagate through time. d_output (T, B, D*H_out) or None; d_h_n like h_n or None.

        Returns (d_x (T, B, I), or None for index inputs; d_hx like hx; grads keyed like the state
        dict).
        """
        B = cache["shape"][1]
        D, H_out = self.num_directions, self.output_size
        if d_output is not None:
            d_output = np.asarray(to_numpy(d_output), dtype=self.dtype)  # gradients in the model's dtype
            if d_output.shape != cache["out_shape"]:
                raise ValueError(
                    f"d_output must have the output's shape. Expected {cache['out_shape']}, "
                    f"got {d_output.shape}"
                )
        d_finals = self._final_grads(d_h_n, B)
        grads, d_hx = {}, [None] * (self.num_layers * D)
        d_out = d_output
        for layer in range(self.num_layers - 1, -1, -1):
            d_in = None
            for d in range(D):
                d_hs = None
                if d_out is not None:
                    d_hs = d_out[:, :, d * H_out : (d + 1) * H_out]
                    d_hs = d_hs if d == 0 else d_hs[::-1]  # the reverse direction runs backwards
                k = layer * D + d
                dir_cache = cache["caches"][layer][d]
                d_x, d_hx[k], dir_grads = self._run_direction_backward(d_hs, d_finals[k], dir_cache)
                if d_x is not None:
                    d_x = d_x if d == 0 else d_x[::-1]
                    d_in = d_x if d_in is None else d_in + d_x  # both directions read the same input
                suffix = f"_l{layer}{self._suffixes()[d]}"
                for base, value in dir_grads.items():
                    grads[base + suffix] = value
            d_out = d_in
        ordered = {name: grads[name] for name in self._params}
        return d_out, self._stack_states(d_hx), ordered

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


def state_array(name, value, expected, dtype):
    """``value`` as an array of ``dtype``, checked to have the ``expected`` shape."""
    array = np.asarray(to_numpy(value), dtype=dtype)
    if array.shape != expected:
        raise ValueError(f"Expected {name} size {expected}, got {tuple(array.shape)}")
    return array
