// The Elman cell h' = s(gi + a), s = tanh or relu, a = W_hh h_in, gi = W_ih x + b_ih + b_hh; the
// time loop around it is one_state_loop.h. Backward: da = dh s'(.), from s's output h':
// 1 - h'^2 (tanh), [h' > 0] (relu).
//
// The step is the eager kernel's (rnnkit/nn/fast/elman.py) op for op: gi + a by at::addmm (or,
// with MKL's packed GEMM, the product then the sum), then s in place. The relu cell is therefore
// the eager kernel bit for bit; tanh differs only in tanh itself (vec_ops.h's vtanh, one exp).

#include "one_state_loop.h"

namespace rnnkit::cpu {
namespace {

// out = s(gi + a) over n contiguous elements (gi null: out = s(a)); out may be a.
template <typename scalar_t, bool RELU>
void activation(int64_t n, const scalar_t* gi, const scalar_t* a, scalar_t* out) {
  using Vec = Vectorized<scalar_t>;
  const Vec zero(0);
  vloop<Vec>(n, [&](int64_t k, int64_t cnt) {
    Vec v = Vec::loadu(a + k, cnt);
    if (gi) v = Vec::loadu(gi + k, cnt) + v;  // the eager order: torch.add(gi, a)
    (RELU ? at::vec::clamp_min(v, zero) : vtanh(v)).store(out + k, cnt);
  });
}

// da = dh s'(.) over n contiguous elements, from h = s(.): relu dh [h > 0] (as the eager kernel:
// times 1 or 0), tanh dh (1 - h^2).
template <typename scalar_t, bool RELU>
void activation_backward(int64_t n, const scalar_t* dh, const scalar_t* h, scalar_t* da) {
  using Vec = Vectorized<scalar_t>;
  const Vec zero(0), one(1);
  vloop<Vec>(n, [&](int64_t k, int64_t cnt) {
    const Vec y = Vec::loadu(h + k, cnt);
    const Vec slope = RELU ? Vec::blendv(zero, one, y > zero) : one - y * y;
    (Vec::loadu(dh + k, cnt) * slope).store(da + k, cnt);
  });
}

// f(i0, i1) over [0, n) split into parallel tasks of at least 8K elements.
template <typename F>
void split(int64_t n, F&& f) {
  at::parallel_for(0, n, 8192, std::forward<F>(f));
}

}  // namespace

// The forward over all T steps (in place: states.S and fresh). save: whether backward will run;
// the Elman cell keeps nothing beyond its states (its backward reads s' off h'), so forward is
// the same either way.
void elman_forward_loop(bool relu, const Linear& product, const Masks& masks, const States& states,
                        const at::Tensor& gi, bool reverse, bool save) {
  (void)save;
  const auto dtype = gi.scalar_type();
  check(gi, "gi", dtype);
  check_states(masks, states, dtype);
  const int64_t T = gi.size(0), B = gi.size(1), H = gi.size(2);
  TORCH_CHECK(states.S.sizes() == at::IntArrayRef({T + 1, B, H}), "S must be (T + 1, B, H)");
  AT_DISPATCH_FLOATING_TYPES(dtype, "elman_forward_loop", [&] {
    forward_time_loop(masks, states, reverse, [&](int64_t t, const at::Tensor& x,
                                                  const at::Tensor&, at::Tensor& h_new) {
      const at::Tensor gi_t = gi.select(0, t);
      const scalar_t* g = nullptr;  // with addmm the sum is done: s in place
      at::Tensor a = h_new;
      if (product.packed) {
        a = mkl_linear(x, *product.packed, product.weight, B);
        g = ptr<scalar_t>(gi_t);
      } else {
        at::addmm_out(h_new, gi_t, x, product.weight_t);
      }
      const scalar_t* ap = ptr<scalar_t>(a);
      scalar_t* out = ptr<scalar_t>(h_new);
      split(B * H, [&](int64_t i0, int64_t i1) {
        with_flag(relu, [&](auto RELU) {
          activation<scalar_t, decltype(RELU)::value>(i1 - i0, g ? g + i0 : nullptr, ap + i0,
                                                      out + i0);
        });
      });
    });
  });
}

// The backward over all T steps. h_new (T, B, H): each step's new state before any blend; dy
// (T, B, H) the output gradient; dh_last (B, H) the gradient on the final state. Writes da
// (T, B, H), the gradient of gi and of a; returns the gradient on h_0.
at::Tensor elman_backward_loop(bool relu, const Linear& product, const Masks& masks,
                               const at::Tensor& h_new, const at::Tensor& da, const at::Tensor& dy,
                               const at::Tensor& dh_last, bool reverse) {
  const auto dtype = da.scalar_type();
  check(h_new, "h_new", dtype);
  check(da, "da", dtype);
  TORCH_CHECK(da.dim() == 3 && h_new.sizes() == da.sizes(), "h_new and da must be (T, B, H)");
  const int64_t B = da.size(1), H = da.size(2);
  at::Tensor dh0;
  AT_DISPATCH_FLOATING_TYPES(dtype, "elman_backward_loop", [&] {
    auto step = [&](int64_t t, const at::Tensor& dh, at::Tensor&) {
      const scalar_t* d = ptr<scalar_t>(dh);
      const scalar_t* h = ptr<scalar_t>(h_new, t * B * H);
      scalar_t* out = ptr<scalar_t>(da, t * B * H);
      split(B * H, [&](int64_t i0, int64_t i1) {
        with_flag(relu, [&](auto RELU) {
          activation_backward<scalar_t, decltype(RELU)::value>(i1 - i0, d + i0, h + i0, out + i0);
        });
      });
      return false;  // no gradient bypasses W_hh
    };
    dh0 = backward_time_loop(product, masks, da, dy, dh_last, reverse, step);
  });
  return dh0;
}

void bind_elman(pybind11::module_& m) {
  namespace py = pybind11;
  using release = py::call_guard<py::gil_scoped_release>;
  m.def("forward_loop", &elman_forward_loop, "Elman forward over all steps (in place)",
        py::arg("relu"), py::arg("product"), py::arg("masks"), py::arg("states"), py::arg("gi"),
        py::arg("reverse"), py::arg("save"), release());
  m.def("backward_loop", &elman_backward_loop,
        "Elman backward over all steps; returns the gradient on h0", py::arg("relu"),
        py::arg("product"), py::arg("masks"), py::arg("h_new"), py::arg("da"), py::arg("dy"),
        py::arg("dh_last"), py::arg("reverse"), release());
}

}  // namespace rnnkit::cpu
