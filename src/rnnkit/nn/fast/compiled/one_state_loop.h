// The time loop of the cells whose state is h alone (GRU, layer-norm GRU, Elman), forward and
// backward: the order of steps for either direction, the hidden mask on the h entering W_hh, the
// blends (zoneout, lengths) and the backward's products with W_hh. Each cell gives one step's
// arithmetic as a function; the loop around it is this file, once for every such cell.
//
// The same products, masks and blends as the Python driver (rnnkit/nn/fast/driver.py:
// _forward_loop, _backward_loop), in the same order, so that a compiled cell differs from its
// eager kernel only in its step's own arithmetic.

#pragma once

#include "linear.h"

#include <utility>

namespace rnnkit::cpu {

// The masks, both optional: hidden_mask (B, H) on the h entering W_hh (variational dropout);
// keep (T, B, 1 or H) the update fractions h_t = h_{t-1} + k_t (h'_t - h_{t-1}) (zoneout, lengths).
struct Masks {
  std::optional<at::Tensor> hidden_mask, keep;
};

// The states between steps, S (T + 1, B, H): step t reads j = t and writes j = t + 1 going
// forward; in reverse it reads j = t + 1 and writes j = t. With keep, each step writes its new
// state h'_t into fresh (T, B, H) and the blended state goes to S.
struct States {
  at::Tensor S;
  std::optional<at::Tensor> fresh;
};

inline void check_states(const Masks& masks, const States& states, at::ScalarType dtype) {
  check(states.S, "S", dtype);
  check(states.fresh, "fresh", dtype);
  check(masks.hidden_mask, "hidden_mask", dtype);
  TORCH_CHECK(states.S.dim() == 3, "S must be (T + 1, B, H)");
  TORCH_CHECK(states.fresh.has_value() == masks.keep.has_value(),
              "fresh (the new states before the blend) goes with keep");
  if (states.fresh)
    TORCH_CHECK(states.fresh->dim() == 3 && states.fresh->size(0) == states.S.size(0) - 1,
                "fresh must be (T, B, H)");
}

// The forward over all T steps. step(t, h_in, h_prev, h_new): the cell's step t, with h_in the
// h entering W_hh (masked or h_prev itself), h_prev the carried state, h_new the (B, H) view to
// write the new state into.
template <typename Step>
void forward_time_loop(const Masks& masks, const States& states, bool reverse, Step&& step) {
  const at::Tensor& S = states.S;
  const int64_t T = S.size(0) - 1;
  at::Tensor h_in = masks.hidden_mask ? at::empty_like(S.select(0, 0)) : at::Tensor();
  for (int64_t n = 0; n < T; ++n) {
    const int64_t t = reverse ? T - 1 - n : n;
    const int64_t jp = reverse ? t + 1 : t, jn = reverse ? t : t + 1;
    const at::Tensor h_prev = S.select(0, jp);
    const at::Tensor& x = masks.hidden_mask ? at::mul_out(h_in, h_prev, *masks.hidden_mask)
                                            : h_prev;
    at::Tensor h_new = states.fresh ? states.fresh->select(0, t) : S.select(0, jn);
    step(t, x, h_prev, h_new);
    if (states.fresh) {  // h_t = h_{t-1} + k_t (h'_t - h_{t-1}), the driver's torch.lerp
      at::Tensor dst = S.select(0, jn);
      at::lerp_out(dst, h_prev, h_new, masks.keep->select(0, t));
    }
  }
}

// The backward over all T steps, in the reverse of the forward's order. dy (T, B, H): the output
// gradient (any strides); dh_last (B, H): the gradient on the final state; `product`: da -> da W_hh;
// da (T, B, G): where step t writes the gradient of a_t = h_in W_hh^T. step(t, dh, direct) -> bool:
// the cell's backward of step t given dh, the gradient on its new state h'_t; it writes da[t] and,
// where the cell has one (the GRU's carry), the gradient on h_{t-1} that bypasses W_hh into
// `direct` (B, H), returning whether it did. Returns the gradient on h_0.
template <typename Step>
at::Tensor backward_time_loop(const Linear& product, const Masks& masks, const at::Tensor& da,
                              const at::Tensor& dy, const at::Tensor& dh_last, bool reverse,
                              Step&& step) {
  const int64_t T = da.size(0);
  TORCH_CHECK(dy.dim() == 3 && dy.size(0) == T, "dy must be (T, B, H)");
  const int64_t t0 = reverse ? 0 : T - 1;
  // ping-pong buffers: the gradient on the state after the step being undone, and before it
  at::Tensor dh = at::add(dh_last, dy.select(0, t0)).contiguous();
  at::Tensor dh_prev = at::empty_like(dh), direct = at::empty_like(dh);
  for (int64_t n = 0; n < T; ++n) {
    const int64_t t = reverse ? n : T - 1 - n;
    // zoneout / lengths: the gradient on h_t splits into k_t d (to the new state h'_t) and
    // d - k_t d (held over to h_{t-1}), as in the driver
    const at::Tensor dh_new = masks.keep ? at::mul(dh, masks.keep->select(0, t)) : dh;
    const at::Tensor hold = masks.keep ? at::sub(dh, dh_new) : at::Tensor();
    const bool has_direct = step(t, dh_new, direct);
    // the h gradient before step t: through W_hh, plus the previous step's output gradient
    const at::Tensor dy_prev = n + 1 < T ? dy.select(0, reverse ? t + 1 : t - 1) : at::Tensor();
    at::Tensor dh_next =
        grad_through_w_hh(product, masks.hidden_mask, da.select(0, t), dy_prev, dh_prev);
    if (has_direct) dh_next.add_(direct);
    if (masks.keep) dh_next.add_(hold);
    dh_prev = dh;  // free for the next step (unpacked products write into it)
    dh = dh_next;
  }
  return dh;
}

// The argument types above, for Python (module.cpp calls this once, into a submodule).
inline void bind_one_state_loop(pybind11::module_& m) {
  namespace py = pybind11;
  using Opt = std::optional<at::Tensor>;
  py::class_<Linear>(m, "Linear")
      .def(py::init<at::Tensor, at::Tensor, Opt, std::string>(), py::arg("weight"),
           py::arg("weight_t"), py::arg("packed") = py::none(), py::arg("backend") = "torch");
  py::class_<Masks>(m, "Masks")
      .def(py::init<Opt, Opt>(), py::arg("hidden_mask") = py::none(), py::arg("keep") = py::none());
  py::class_<States>(m, "States")
      .def(py::init<at::Tensor, Opt>(), py::arg("S"), py::arg("fresh") = py::none());
}

}  // namespace rnnkit::cpu
