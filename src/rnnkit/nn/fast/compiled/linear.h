// The products with one fixed weight W (W_hh in the time loops), forward and backward: x W^T, and
// the gradient that reaches the h a step read through W_hh. When the weight is packed, by oneDNN's
// inner product or MKL's packed GEMM through the dispatcher (what products.py uses from Python);
// else by at::mm. Shared by every compiled cell (lstm.cpp, one_state_loop.h).

#pragma once

#include "vec_ops.h"

#include <string>

namespace rnnkit::cpu {

// MKL's packed-weight GEMM (what products.py uses from Python), through the dispatcher.
inline at::Tensor mkl_linear(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& w,
                             int64_t batch) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mkl::_mkl_linear", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const std::optional<at::Tensor>&, int64_t)>();
  return op.call(x, packed, w, std::nullopt, batch);
}

// oneDNN's inner product x W^T with a weight reordered once (products.py's "onednn").
inline at::Tensor onednn_linear(const at::Tensor& x, const at::Tensor& packed) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                            c10::string_view, c10::List<std::optional<at::Scalar>>,
                            std::optional<c10::string_view>)>();
  return op.call(x, packed, std::nullopt, "none", c10::List<std::optional<at::Scalar>>(), "");
}

// A product x -> x W^T with one fixed W, by the library products.py chose: when `packed` is
// given, oneDNN's inner product (backend "onednn", `packed` the reordered weight) or MKL's packed
// GEMM (`packed` the packed weight, `weight` its origin W); else at::mm with `weight_t` = W^T.
struct Linear {
  at::Tensor weight, weight_t;
  std::optional<at::Tensor> packed;
  std::string backend;
};

// x W^T by the packed product (a new tensor); `p.packed` must be given.
inline at::Tensor packed_linear(const Linear& p, const at::Tensor& x) {
  if (p.backend == "onednn") return onednn_linear(x, *p.packed);
  return mkl_linear(x, *p.packed, p.weight, x.size(0));
}

// x W^T: packed, a new tensor; else written into `out` and returned.
inline at::Tensor linear(const Linear& p, const at::Tensor& x, at::Tensor& out) {
  return p.packed ? packed_linear(p, x) : at::mm_out(out, x, p.weight_t);
}

// The gradient on the h entering a step, as the driver computes it: (da_t W_hh) * hidden_mask
// (variational dropout on the h entering W_hh; none: no factor) + dy_prev, the output gradient of
// the step before it (undefined at the sequence's first step: no term). `product` holds W_hh as
// the forward's product held W_hh^T. Packed: a new tensor; unpacked: written into `out`, by one
// addmm where there is no mask to apply between the product and the sum.
inline at::Tensor grad_through_w_hh(const Linear& product,
                                    const std::optional<at::Tensor>& hidden_mask,
                                    const at::Tensor& da_t, const at::Tensor& dy_prev,
                                    at::Tensor& out) {
  if (!product.packed && !hidden_mask && dy_prev.defined())
    return at::addmm_out(out, dy_prev, da_t, product.weight_t);
  at::Tensor dh = linear(product, da_t, out);
  if (hidden_mask) dh.mul_(*hidden_mask);
  if (dy_prev.defined()) dh.add_(dy_prev);
  return dh;
}

}  // namespace rnnkit::cpu
