"""The arguments of ``one_state_loop.h`` (the C++ time loop of the GRU and Elman cells) from the
driver's objects: the per-step products, the masks and the state buffers."""

from __future__ import annotations


def products(ext, prod, backward: bool):
    """The C++ side's ``Linear`` for the per-step products of ``prod`` (a ``Products``): forward
    ``h_in W_hh^T``, backward ``da W_hh``; MKL's packed GEMM where ``prod`` packs."""
    if backward:
        if prod.packed:
            packed, origin = prod.back_weights()
            return ext.one_state.Linear(weight=origin, weight_t=prod.w_hh, packed=packed)
        return ext.one_state.Linear(weight=prod.w_hh, weight_t=prod.w_hh)
    if prod.packed:
        return ext.one_state.Linear(weight=prod.w_hh, weight_t=prod.w_hh, packed=prod.fwd_w)
    return ext.one_state.Linear(weight=prod.w_hh, weight_t=prod.w_t)


def masks(ext, hidden_mask, keeps):
    """``Masks``: the hidden mask (B, H) and the update fractions of h (T, B, 1 or H), or None."""
    return ext.one_state.Masks(hidden_mask, keeps[0])


def states(ext, S, NEW):
    """``States``: the (T + 1, B, H) state buffer and, when blending, the (T, B, H) buffer of the
    new states before the blend (the driver's S[0] and NEW[0])."""
    return ext.one_state.States(S[0], None if NEW is None else NEW[0])
