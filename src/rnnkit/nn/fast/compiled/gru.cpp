// The GRU, layer-normalised (Ba et al. 2016) or plain, as one fused pass over each batch row per
// step, forward and backward; the time loop around it is one_state_loop.h.
//
// Notation as rnnkit/nn/fast/gru.py: a = W_hh h_in (B, 3H); gi = W_ih x + b_ih (B, 3H);
// gh = a + b_hh (plain, torch.nn.GRU's cell) or gh = gamma_hh * ahat + b_hh, ahat = (a - mean(a))
// rstd_a (layer norm); [r, z, n] in torch's order: r = s(gi_r + gh_r), z = s(gi_z + gh_z),
// n = tanh(gi_n + r gh_n), h' = n + z (h - n). With the input side's layer norm inside the loop
// (cell ln_gru_x) the step is given x = W_ih x_t and makes gi = gamma_ih * xhat + shift itself.
//
// Backward, from dh (the gradient on h'): d pre_n = dh (1 - z)(1 - n^2); d pre_z = dh (h - n)
// z (1 - z); d pre_r = d pre_n gh_n r (1 - r); d gi = [d pre_r, d pre_z, d pre_n];
// d gh = [d pre_r, d pre_z, d pre_n r]; the carry gives h_{t-1} the gradient dh z directly.

#include "one_state_loop.h"

namespace rnnkit::cpu {

// The GRU's own tensors: layer norm on or off and its epsilon; gamma_hh (3H) with layer norm;
// b_hh (3H) or none (bias=False); with the input layer norm inside the loop gamma_ih (3H) and
// its shift (3H, or none).
struct GRUCell {
  bool layer_norm;
  double eps;
  std::optional<at::Tensor> gamma_hh, b_hh, gamma_ih, shift;
};

// What forward keeps for backward, R = T rows (empty tensors when forward saves nothing):
// rz (R, B, 2H) = r, z; n, ghn (R, B, H) = n, gh_n; with layer norm ahat (R, B, 3H) and rstd
// (R, B) of a; with the input layer norm stat_x (2, R, B): mean and rstd of W_ih x. scratch
// (B, 3H): the product a of one step, where no kept buffer takes it.
struct GRUSaved {
  at::Tensor rz, n, ghn, scratch;
  std::optional<at::Tensor> ahat, rstd, stat_x;
};

// Backward's outputs: dgi (T, B, 3H) the gradient of gi (with the input layer norm one step's
// scratch (1, B, 3H), and dx (T, B, 3H) the gradient of W_ih x); dgh the gradient of gh (the
// plain GRU: da itself; layer norm: one step's scratch (1, B, 3H)); da (T, B, 3H) the gradient
// of a; xhat (B, 3H) scratch; the parameters' gradients, added to.
struct GRUGrads {
  at::Tensor dgi, dgh, da;
  std::optional<at::Tensor> dx, xhat, d_gamma_hh, d_b_hh, d_gamma_ih, d_shift;
};

namespace {

template <typename scalar_t>
struct Params {  // GRUCell's tensors as pointers; null where absent
  const scalar_t *gamma_hh, *b_hh, *gamma_ih, *shift;
};

// The (B, .) blocks of one step. Forward reads gi, a, h and writes h_new and (when saving) the
// rest; backward reads them all but h_new. ahat may be a's own memory: each element of a is read
// before ahat's is written.
template <typename scalar_t>
struct Blocks {
  const scalar_t* gi;  // (B, 3H) gi, or W_ih x with the input layer norm
  const scalar_t* a;   // (B, 3H)
  const scalar_t* h;   // (B, H) h_{t-1}
  scalar_t* h_new;     // (B, H)
  scalar_t *rz, *n, *ghn, *ahat, *rstd_a, *mean_x, *rstd_x;  // null: not kept
};

// The gradients of one step: dh (B, H) on h'; dgi, dgh (B, 3H); da (B, 3H) with layer norm;
// direct (B, H) = dh z; xhat (B, 3H) scratch and dx (B, 3H) with the input layer norm.
template <typename scalar_t>
struct GradBlocks {
  const scalar_t* dh;
  scalar_t *dgi, *dgh, *da, *direct, *xhat, *dx;
};

// Forward of one step over rows b0..b1. LN: layer norm on a. The input layer norm is on when
// p.gamma_ih is given; what is kept is written when s.rz is given.
template <typename scalar_t, bool LN>
void forward_rows(int64_t b0, int64_t b1, int64_t H, double eps, const Params<scalar_t>& p,
                  const Blocks<scalar_t>& s) {
  using Vec = Vectorized<scalar_t>;
  const int64_t G = 3 * H;
  const bool save = s.rz != nullptr;
  for (int64_t b = b0; b < b1; ++b) {
    const scalar_t* gr = s.gi + b * G;
    const scalar_t* ar = s.a + b * G;
    scalar_t* ah = save && LN ? s.ahat + b * G : nullptr;
    scalar_t mean_x = 0, rstd_x = 0, mean_a = 0, rstd_a = 0;
    if (p.gamma_ih) {
      moments(gr, G, eps, mean_x, rstd_x);
      if (save) s.mean_x[b] = mean_x, s.rstd_x[b] = rstd_x;
    }
    if (LN) {
      moments(ar, G, eps, mean_a, rstd_a);
      if (save) s.rstd_a[b] = rstd_a;
    }
    const Vec mx(mean_x), rx(rstd_x), ma(mean_a), ra(rstd_a);
    auto input = [&](int64_t j, int64_t cnt) {  // gi at column j
      Vec g = Vec::loadu(gr + j, cnt);
      if (!p.gamma_ih) return g;
      g = Vec::loadu(p.gamma_ih + j, cnt) * ((g - mx) * rx);
      return p.shift ? g + Vec::loadu(p.shift + j, cnt) : g;
    };
    auto recurrent = [&](int64_t j, int64_t cnt) {  // gh at column j
      Vec v = Vec::loadu(ar + j, cnt);
      if (LN) {
        v = (v - ma) * ra;
        if (ah) v.store(ah + j, cnt);
        v = Vec::loadu(p.gamma_hh + j, cnt) * v;
      }
      return p.b_hh ? v + Vec::loadu(p.b_hh + j, cnt) : v;
    };
    vloop<Vec>(H, [&](int64_t k, int64_t cnt) {
      const Vec r = vsigmoid(input(k, cnt) + recurrent(k, cnt));
      const Vec z = vsigmoid(input(H + k, cnt) + recurrent(H + k, cnt));
      const Vec ghn = recurrent(2 * H + k, cnt);
      const Vec n = vtanh(input(2 * H + k, cnt) + r * ghn);
      const Vec h = Vec::loadu(s.h + b * H + k, cnt);
      (n + z * (h - n)).store(s.h_new + b * H + k, cnt);
      if (save) {
        r.store(s.rz + b * 2 * H + k, cnt);
        z.store(s.rz + b * 2 * H + H + k, cnt);
        n.store(s.n + b * H + k, cnt);
        ghn.store(s.ghn + b * H + k, cnt);
      }
    });
  }
}

// Backward of one step over rows b0..b1 (see the top of the file for the formulas).
template <typename scalar_t, bool LN>
void backward_rows(int64_t b0, int64_t b1, int64_t H, const Params<scalar_t>& p,
                   const Blocks<scalar_t>& s, const GradBlocks<scalar_t>& d) {
  using Vec = Vectorized<scalar_t>;
  const int64_t G = 3 * H;
  const Vec one(1);
  for (int64_t b = b0; b < b1; ++b) {
    scalar_t* dgi = d.dgi + b * G;
    scalar_t* dgh = d.dgh + b * G;
    vloop<Vec>(H, [&](int64_t k, int64_t cnt) {
      const Vec dh = Vec::loadu(d.dh + b * H + k, cnt);
      const Vec r = Vec::loadu(s.rz + b * 2 * H + k, cnt);
      const Vec z = Vec::loadu(s.rz + b * 2 * H + H + k, cnt);
      const Vec n = Vec::loadu(s.n + b * H + k, cnt);
      const Vec h = Vec::loadu(s.h + b * H + k, cnt);
      const Vec dpn = dh * (one - z) * (one - n * n);
      const Vec dpz = dh * (h - n) * z * (one - z);
      const Vec dpr = dpn * Vec::loadu(s.ghn + b * H + k, cnt) * r * (one - r);
      dpr.store(dgi + k, cnt);
      dpz.store(dgi + H + k, cnt);
      dpn.store(dgi + 2 * H + k, cnt);
      dpr.store(dgh + k, cnt);
      dpz.store(dgh + H + k, cnt);
      (dpn * r).store(dgh + 2 * H + k, cnt);
      (dh * z).store(d.direct + b * H + k, cnt);
    });
    if (LN)  // through ahat: da = LN backward of d gh
      layer_norm_backward_row<scalar_t>(G, dgh, p.gamma_hh, s.ahat + b * G, s.rstd_a[b],
                                        d.da + b * G);
    if (p.gamma_ih) {  // through the input LN: dx = LN backward of d gi
      const Vec mx(s.mean_x[b]), rx(s.rstd_x[b]);
      scalar_t* xh = d.xhat + b * G;
      vloop<Vec>(G, [&](int64_t k, int64_t cnt) {
        ((Vec::loadu(s.gi + b * G + k, cnt) - mx) * rx).store(xh + k, cnt);
      });
      layer_norm_backward_row<scalar_t>(G, dgi, p.gamma_ih, xh, s.rstd_x[b], d.dx + b * G);
    }
  }
}

void check_args(const GRUCell& cell, const GRUSaved& saved, const at::Tensor& gi, bool save) {
  const auto dtype = gi.scalar_type();
  TORCH_CHECK(gi.dim() == 3 && gi.size(2) % 3 == 0, "gi must be (T, B, 3H)");
  for (const std::optional<at::Tensor>* o : {&cell.gamma_hh, &cell.b_hh, &cell.gamma_ih, &cell.shift})
    check(*o, "the cell's tensors", dtype);
  TORCH_CHECK(!cell.layer_norm || cell.gamma_hh, "layer norm needs gamma_hh");
  TORCH_CHECK(!cell.gamma_ih || cell.layer_norm, "the input layer norm goes with layer norm");
  check(saved.scratch, "scratch", dtype);
  if (!save) return;
  const int64_t T = gi.size(0), B = gi.size(1), H = gi.size(2) / 3;
  for (const at::Tensor* t : {&saved.rz, &saved.n, &saved.ghn}) check(*t, "rz, n, ghn", dtype);
  TORCH_CHECK(saved.rz.sizes() == at::IntArrayRef({T, B, 2 * H}) &&
                  saved.n.sizes() == at::IntArrayRef({T, B, H}) &&
                  saved.ghn.sizes() == at::IntArrayRef({T, B, H}),
              "saving for backward needs rz (T, B, 2H), n and ghn (T, B, H)");
  if (cell.layer_norm) {
    TORCH_CHECK(saved.ahat && saved.rstd, "layer norm keeps ahat and rstd");
    check(saved.ahat, "ahat", dtype);
    check(saved.rstd, "rstd", dtype);
    TORCH_CHECK(saved.ahat->sizes() == gi.sizes() && saved.rstd->sizes() == at::IntArrayRef({T, B}),
                "ahat must be (T, B, 3H) and rstd (T, B)");
  }
  if (cell.gamma_ih) {
    TORCH_CHECK(saved.stat_x, "the input layer norm keeps stat_x");
    check(saved.stat_x, "stat_x", dtype);
    TORCH_CHECK(saved.stat_x->sizes() == at::IntArrayRef({2, T, B}), "stat_x must be (2, T, B)");
  }
}

template <typename scalar_t>
Params<scalar_t> params(const GRUCell& cell) {
  return {ptr<scalar_t>(cell.gamma_hh), ptr<scalar_t>(cell.b_hh), ptr<scalar_t>(cell.gamma_ih),
          ptr<scalar_t>(cell.shift)};
}

// The kept blocks of step t (all null when nothing is kept).
template <typename scalar_t>
Blocks<scalar_t> kept(const GRUSaved& saved, int64_t t, bool save) {
  Blocks<scalar_t> s{};
  if (!save) return s;
  const int64_t T = saved.rz.size(0), B = saved.rz.size(1), H = saved.n.size(2);
  s.rz = ptr<scalar_t>(saved.rz, t * B * 2 * H);
  s.n = ptr<scalar_t>(saved.n, t * B * H);
  s.ghn = ptr<scalar_t>(saved.ghn, t * B * H);
  s.ahat = ptr<scalar_t>(saved.ahat, t * B * 3 * H);
  s.rstd_a = ptr<scalar_t>(saved.rstd, t * B);
  s.mean_x = ptr<scalar_t>(saved.stat_x, t * B);
  s.rstd_x = ptr<scalar_t>(saved.stat_x, (T + t) * B);
  return s;
}

}  // namespace

// The forward over all T steps (in place: states.S, and what is kept for backward when `save`).
// save false: forward keeps nothing (no gradient wanted); only S (and fresh) are written.
void gru_forward_loop(const GRUCell& cell, const Linear& product, const Masks& masks,
                      const States& states, const GRUSaved& saved, const at::Tensor& gi,
                      bool reverse, bool save) {
  check_args(cell, saved, gi, save);
  check_states(masks, states, gi.scalar_type());
  const int64_t T = gi.size(0), B = gi.size(1), G = gi.size(2), H = G / 3;
  TORCH_CHECK(states.S.sizes() == at::IntArrayRef({T + 1, B, H}), "S must be (T + 1, B, H)");
  AT_DISPATCH_FLOATING_TYPES(gi.scalar_type(), "gru_forward_loop", [&] {
    const Params<scalar_t> p = params<scalar_t>(cell);
    forward_time_loop(masks, states, reverse, [&](int64_t t, const at::Tensor& x,
                                                  const at::Tensor& h_prev, at::Tensor& h_new) {
      // a = h_in W_hh^T; unpacked with layer norm, into ahat's row, which the row loop then
      // overwrites with ahat
      at::Tensor dst = save && cell.layer_norm ? saved.ahat->select(0, t) : saved.scratch;
      const at::Tensor a = linear(product, x, dst);
      Blocks<scalar_t> s = kept<scalar_t>(saved, t, save);
      s.gi = ptr<scalar_t>(gi, t * B * G);
      s.a = ptr<scalar_t>(a);
      s.h = ptr<scalar_t>(h_prev);
      s.h_new = ptr<scalar_t>(h_new);
      at::parallel_for(0, B, row_grain(G), [&](int64_t b0, int64_t b1) {
        with_flag(cell.layer_norm, [&](auto LN) {
          forward_rows<scalar_t, decltype(LN)::value>(b0, b1, H, cell.eps, p, s);
        });
      });
    });
  });
}

// The backward over all T steps. h_prev (T, B, H): the state each step read; dy (T, B, H) the
// output gradient; dh_last (B, H) the gradient on the final state. Writes grads.dgi (or dx),
// grads.da and adds to the parameters' gradients; returns the gradient on h_0.
at::Tensor gru_backward_loop(const GRUCell& cell, const Linear& product, const Masks& masks,
                             const GRUSaved& saved, const GRUGrads& grads, const at::Tensor& gi,
                             const at::Tensor& h_prev, const at::Tensor& dy,
                             const at::Tensor& dh_last, bool reverse) {
  check_args(cell, saved, gi, true);
  const auto dtype = gi.scalar_type();
  const int64_t T = gi.size(0), B = gi.size(1), G = gi.size(2), H = G / 3;
  for (const at::Tensor* t : {&h_prev, &grads.dgi, &grads.dgh, &grads.da}) check(*t, "h_prev, dgi, dgh, da", dtype);
  for (const auto* o : {&grads.dx, &grads.xhat, &grads.d_gamma_hh, &grads.d_b_hh, &grads.d_gamma_ih, &grads.d_shift})
    check(*o, "the gradients", dtype);
  TORCH_CHECK(h_prev.sizes() == at::IntArrayRef({T, B, H}), "h_prev must be (T, B, H)");
  TORCH_CHECK(grads.da.sizes() == gi.sizes(), "da must be (T, B, 3H)");
  for (const at::Tensor* t : {&grads.dgi, &grads.dgh})
    TORCH_CHECK(t->dim() == 3 && (t->size(0) == T || t->size(0) == 1) && t->size(1) == B &&
                    t->size(2) == G, "dgi and dgh must be (T or 1, B, 3H)");
  TORCH_CHECK(cell.layer_norm || grads.dgh.is_same(grads.da), "the plain GRU's dgh is da");
  TORCH_CHECK(!cell.gamma_ih || (grads.dx && grads.xhat), "the input layer norm needs dx, xhat");
  TORCH_CHECK(!cell.layer_norm || grads.d_gamma_hh, "layer norm needs d_gamma_hh");
  TORCH_CHECK(!cell.b_hh || grads.d_b_hh, "b_hh needs d_b_hh");
  TORCH_CHECK(!cell.gamma_ih || grads.d_gamma_ih, "gamma_ih needs d_gamma_ih");
  TORCH_CHECK(!cell.shift || grads.d_shift, "shift needs d_shift");
  at::Tensor dh0;
  AT_DISPATCH_FLOATING_TYPES(dtype, "gru_backward_loop", [&] {
    const Params<scalar_t> p = params<scalar_t>(cell);
    auto step = [&](int64_t t, const at::Tensor& dh, at::Tensor& direct) {
      Blocks<scalar_t> s = kept<scalar_t>(saved, t, true);
      s.gi = ptr<scalar_t>(gi, t * B * G);
      s.h = ptr<scalar_t>(h_prev, t * B * H);
      auto row = [&](const at::Tensor& x) { return ptr<scalar_t>(x, (x.size(0) == T ? t : 0) * B * G); };
      const GradBlocks<scalar_t> d{ptr<scalar_t>(dh), row(grads.dgi), row(grads.dgh),
                                   ptr<scalar_t>(grads.da, t * B * G), ptr<scalar_t>(direct),
                                   ptr<scalar_t>(grads.xhat), ptr<scalar_t>(grads.dx, t * B * G)};
      at::parallel_for(0, B, row_grain(G), [&](int64_t b0, int64_t b1) {
        with_flag(cell.layer_norm, [&](auto LN) {
          backward_rows<scalar_t, decltype(LN)::value>(b0, b1, H, p, s, d);
        });
      });
      // this step's share of the gains' and shifts' gradients, while its rows are in cache
      if (cell.layer_norm) add_column_sums<scalar_t>(B, G, d.dgh, s.ahat, ptr<scalar_t>(grads.d_gamma_hh));
      if (p.b_hh) add_column_sums<scalar_t>(B, G, d.dgh, nullptr, ptr<scalar_t>(grads.d_b_hh));
      if (p.gamma_ih) add_column_sums<scalar_t>(B, G, d.dgi, d.xhat, ptr<scalar_t>(grads.d_gamma_ih));
      if (p.shift) add_column_sums<scalar_t>(B, G, d.dgi, nullptr, ptr<scalar_t>(grads.d_shift));
      return true;
    };
    dh0 = backward_time_loop(product, masks, grads.da, dy, dh_last, reverse, step);
  });
  return dh0;
}

void bind_gru(pybind11::module_& m) {
  namespace py = pybind11;
  using Opt = std::optional<at::Tensor>;
  py::class_<GRUCell>(m, "Cell")
      .def(py::init<bool, double, Opt, Opt, Opt, Opt>(), py::arg("layer_norm"), py::arg("eps"),
           py::arg("gamma_hh") = py::none(), py::arg("b_hh") = py::none(),
           py::arg("gamma_ih") = py::none(), py::arg("shift") = py::none());
  py::class_<GRUSaved>(m, "Saved")
      .def(py::init<at::Tensor, at::Tensor, at::Tensor, at::Tensor, Opt, Opt, Opt>(),
           py::arg("rz"), py::arg("n"), py::arg("ghn"), py::arg("scratch"),
           py::arg("ahat") = py::none(), py::arg("rstd") = py::none(),
           py::arg("stat_x") = py::none());
  py::class_<GRUGrads>(m, "Grads")
      .def(py::init<at::Tensor, at::Tensor, at::Tensor, Opt, Opt, Opt, Opt, Opt, Opt>(),
           py::arg("dgi"), py::arg("dgh"), py::arg("da"), py::arg("dx") = py::none(),
           py::arg("xhat") = py::none(), py::arg("d_gamma_hh") = py::none(),
           py::arg("d_b_hh") = py::none(), py::arg("d_gamma_ih") = py::none(),
           py::arg("d_shift") = py::none());
  // nothing in the loops touches Python objects once the arguments are converted: the GIL goes
  using release = py::call_guard<py::gil_scoped_release>;
  m.def("forward_loop", &gru_forward_loop, "(LN-)GRU forward over all steps (in place)",
        py::arg("cell"), py::arg("product"), py::arg("masks"), py::arg("states"),
        py::arg("saved"), py::arg("gi"), py::arg("reverse"), py::arg("save"), release());
  m.def("backward_loop", &gru_backward_loop,
        "(LN-)GRU backward over all steps; returns the gradient on h0", py::arg("cell"),
        py::arg("product"), py::arg("masks"), py::arg("saved"), py::arg("grads"), py::arg("gi"),
        py::arg("h_prev"), py::arg("dy"), py::arg("dh_last"), py::arg("reverse"), release());
}

}  // namespace rnnkit::cpu
