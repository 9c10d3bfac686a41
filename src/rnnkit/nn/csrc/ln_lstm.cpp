// The layer-normalised LSTM step (Ba et al. 2016) as two fused CPU loops, one per direction.
//
// Why C++: at T=128, B=32, H=256 the eager step is ~12 small ATen ops, each a separate pass over
// arrays that the step's matrix product has just pushed out of cache, plus Python dispatch; each
// costs 10-30 us. Here one pass per batch row does all of it with the row in L1.
// The matrix products stay in Python (MKL); these functions do everything between them.
//
// Notation as rnnkit/nn/fused.py: a = W_hh h_in (B, 4H) pre-LN; gi = W_ih x + b (B, 4H);
// gates = gi + g_hh * ahat, ahat = (a - mean(a)) rstd_a; [i, f, g, o] = gates (torch order);
// c' = s(f) c + s(i) tanh(g); chat = (c' - mean(c')) rstd_c; y = tanh(g_c * chat + b_c); h' = s(o) y.
//
// The formulas are those of fused.py's _LNLSTMKernel (and rnnkit.scratch); tests tie them.

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>

namespace {

using at::vec::Vectorized;

// Rows per parallel task: at least ~8K elements (8 rows of 4H at H=256), so a batch of a few
// rows stays on one thread instead of paying a thread hand-off per step. Measured at H=256 on
// 2 threads, B=32: 78 -> 47-54 us per forward step against one task (a row costs ~1.5-2 us).
// at::parallel_for only runs on threads when this file is compiled with -fopenmp (its OpenMP
// backend is a header template); cpu_kernels.py passes it when torch's backend is OpenMP.
int64_t row_grain(int64_t width) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(1, width)); }

template <typename scalar_t>
scalar_t hsum(const Vectorized<scalar_t>& v) {
  scalar_t lanes[Vectorized<scalar_t>::size()];
  v.store(lanes);
  scalar_t s = 0;
  for (int k = 0; k < Vectorized<scalar_t>::size(); ++k) s += lanes[k];
  return s;
}

template <typename scalar_t>
Vectorized<scalar_t> vsigmoid(const Vectorized<scalar_t>& x) {
  const Vectorized<scalar_t> one(1);
  return one / (one + x.neg().exp_u20());  // exp(-x) = inf for very negative x gives 0
}

// tanh(x) = sign(x) (1 - 2 / (exp(2|x|) + 1)): exp(2|x|) = inf for large |x| gives 1, as it
// should. Sleef's tanh (what Vectorized::tanh calls) measured ~5x slower than this on this CPU;
// this form loses relative accuracy for |x| near 0 (the absolute error stays one unit of 1.0),
// which nothing downstream of a gate can see.
template <typename scalar_t>
Vectorized<scalar_t> vtanh(const Vectorized<scalar_t>& x) {
  const Vectorized<scalar_t> one(1), two(2), zero(0);
  const Vectorized<scalar_t> t = one - two / ((x.abs() * two).exp_u20() + one);
  return Vectorized<scalar_t>::blendv(t, t.neg(), x < zero);
}

// f(k, cnt) for k = 0, V, 2V, ... < n with cnt = min(V, n - k) lanes: the tail is loaded and
// stored with a count (ATen's loadu zero-fills the lanes past it).
template <typename Vec, typename F>
inline void vloop(int64_t n, F&& f) {
  for (int64_t k = 0; k < n; k += Vec::size()) f(k, std::min<int64_t>(Vec::size(), n - k));
}

// sum over k of term(k, cnt) (a vector), lanes past the end masked off. Four accumulators: one
// would wait on the previous add's latency at every step (measured ~3x slower at n = 1024).
template <typename scalar_t, typename F>
inline scalar_t vsum(int64_t n, F&& term) {
  using Vec = Vectorized<scalar_t>;
  constexpr int64_t V = Vec::size();
  Vec s0(0), s1(0), s2(0), s3(0);
  int64_t k = 0;
  for (; k + 4 * V <= n; k += 4 * V) {
    s0 = s0 + term(k, V);
    s1 = s1 + term(k + V, V);
    s2 = s2 + term(k + 2 * V, V);
    s3 = s3 + term(k + 3 * V, V);
  }
  for (; k < n; k += V) {
    const int64_t cnt = std::min<int64_t>(V, n - k);
    const Vec v = term(k, cnt);
    s0 = s0 + (cnt < V ? Vec::set(Vec(0), v, cnt) : v);
  }
  return hsum((s0 + s1) + (s2 + s3));
}

// mean and 1/sqrt(var + eps) of x[0:n] (two passes, as ATen's layer norm: no cancellation).
template <typename scalar_t>
void moments(const scalar_t* x, int64_t n, double eps, scalar_t& mean, scalar_t& rstd) {
  using Vec = Vectorized<scalar_t>;
  mean = vsum<scalar_t>(n, [&](int64_t k, int64_t cnt) { return Vec::loadu(x + k, cnt); }) / n;
  const Vec m(mean);
  const scalar_t ss = vsum<scalar_t>(n, [&](int64_t k, int64_t cnt) {
    const Vec d = Vec::loadu(x + k, cnt) - m;
    return d * d;
  });
  rstd = scalar_t(1) / std::sqrt(ss / n + scalar_t(eps));
}

// Layer-norm backward for one row without the gain's gradient: y = w xhat (+ shift),
// xhat = (x - mean) rstd  =>  dx = rstd (d - mean(d) - xhat mean(d xhat)), d = dy w.
template <typename scalar_t>
void layer_norm_backward_row(int64_t n, const scalar_t* dy, const scalar_t* w,
                             const scalar_t* xhat, scalar_t rstd, scalar_t* dx) {
  using Vec = Vectorized<scalar_t>;
  const scalar_t s1 = vsum<scalar_t>(n, [&](int64_t k, int64_t cnt) {
    return Vec::loadu(dy + k, cnt) * Vec::loadu(w + k, cnt);
  });
  const scalar_t s2 = vsum<scalar_t>(n, [&](int64_t k, int64_t cnt) {
    return Vec::loadu(dy + k, cnt) * Vec::loadu(w + k, cnt) * Vec::loadu(xhat + k, cnt);
  });
  const Vec m1(s1 / n), m2(s2 / n), r(rstd);
  vloop<Vec>(n, [&](int64_t k, int64_t cnt) {
    const Vec d = Vec::loadu(dy + k, cnt) * Vec::loadu(w + k, cnt);
    (r * (d - m1 - Vec::loadu(xhat + k, cnt) * m2)).store(dx + k, cnt);
  });
}

template <typename scalar_t>
void forward_rows(int64_t b0, int64_t b1, int64_t H, double eps,
                  const scalar_t* a, const scalar_t* gi, const scalar_t* g_hh,
                  const scalar_t* c_prev, const scalar_t* g_c, const scalar_t* b_c,
                  scalar_t* ahat, scalar_t* rstd_a, scalar_t* act, scalar_t* gt, scalar_t* c_new,
                  scalar_t* chat, scalar_t* rstd_c, scalar_t* y, scalar_t* h_new) {
  using Vec = Vectorized<scalar_t>;
  const int64_t G = 4 * H;
  for (int64_t b = b0; b < b1; ++b) {
    const scalar_t* ar = a + b * G;
    const scalar_t* gr = gi + b * G;
    scalar_t* ah = ahat + b * G;
    scalar_t* ac = act + b * G;
    scalar_t mean, rstd;
    moments(ar, G, eps, mean, rstd);
    rstd_a[b] = rstd;
    const Vec m(mean), r(rstd);
    // ahat, and the gates block by block: s() on i, f, o; tanh on g (its act block is unused)
    for (int64_t q = 0; q < 4; ++q) {
      const int64_t off = q * H;
      scalar_t* dst = q == 2 ? gt + b * H : ac + off;
      vloop<Vec>(H, [&](int64_t k, int64_t cnt) {
        const Vec z = (Vec::loadu(ar + off + k, cnt) - m) * r;
        z.store(ah + off + k, cnt);
        const Vec pre = Vec::loadu(gr + off + k, cnt) + Vec::loadu(g_hh + off + k, cnt) * z;
        (q == 2 ? vtanh(pre) : vsigmoid(pre)).store(dst + k, cnt);
      });
    }
    // c' = f c + i g, then its layer norm
    const scalar_t* cp = c_prev + b * H;
    scalar_t* cn = c_new + b * H;
    const scalar_t* gg = gt + b * H;
    vloop<Vec>(H, [&](int64_t k, int64_t cnt) {
      const Vec c = Vec::loadu(ac + H + k, cnt) * Vec::loadu(cp + k, cnt) +
                    Vec::loadu(ac + k, cnt) * Vec::loadu(gg + k, cnt);
      c.store(cn + k, cnt);
    });
    moments(cn, H, eps, mean, rstd);
    rstd_c[b] = rstd;
    const Vec mc(mean), rc(rstd);
    vloop<Vec>(H, [&](int64_t k, int64_t cnt) {
      const Vec z = (Vec::loadu(cn + k, cnt) - mc) * rc;
      z.store(chat + b * H + k, cnt);
      const Vec yy = vtanh(Vec::loadu(g_c + k, cnt) * z + Vec::loadu(b_c + k, cnt));
      yy.store(y + b * H + k, cnt);
      (Vec::loadu(ac + 3 * H + k, cnt) * yy).store(h_new + b * H + k, cnt);
    });
  }
}

// Backward of one step. In: dh, dc (gradients on h', c'), and what forward kept.
// Out: dg = d gates (= d gi) (B, 4H); da = d a (B, 4H); dz = d (g_c chat + b_c) (B, H), scratch
// for the gain and shift gradients; dc_prev = d c (B, H).
template <typename scalar_t>
void backward_rows(int64_t b0, int64_t b1, int64_t H,
                   const scalar_t* dh, const scalar_t* dc, const scalar_t* act, const scalar_t* gt,
                   const scalar_t* y, const scalar_t* c_prev, const scalar_t* chat,
                   const scalar_t* rstd_c, const scalar_t* g_c, const scalar_t* ahat,
                   const scalar_t* rstd_a, const scalar_t* g_hh,
                   scalar_t* dg, scalar_t* da, scalar_t* dz, scalar_t* dc_prev) {
  using Vec = Vectorized<scalar_t>;
  const int64_t G = 4 * H;
  const Vec one(1);
  for (int64_t b = b0; b < b1; ++b) {
    const scalar_t* ac = act + b * G;
    const scalar_t* yr = y + b * H;
    const scalar_t* dhr = dh + b * H;
    scalar_t* dzr = dz + b * H;
    scalar_t* dgr = dg + b * G;
    // dz = dh o (1 - y^2), the gradient of g_c chat + b_c
    vloop<Vec>(H, [&](int64_t k, int64_t cnt) {
      const Vec yy = Vec::loadu(yr + k, cnt);
      (Vec::loadu(dhr + k, cnt) * Vec::loadu(ac + 3 * H + k, cnt) * (one - yy * yy))
          .store(dzr + k, cnt);
    });
    // through chat: dc' = LN backward of dz (written to dc_prev's row, used as scratch) + dc
    scalar_t* dcp = dc_prev + b * H;
    layer_norm_backward_row<scalar_t>(H, dzr, g_c, chat + b * H, rstd_c[b], dcp);
    vloop<Vec>(H, [&](int64_t k, int64_t cnt) {
      const Vec dct = Vec::loadu(dcp + k, cnt) + Vec::loadu(dc + b * H + k, cnt);
      const Vec i = Vec::loadu(ac + k, cnt), f = Vec::loadu(ac + H + k, cnt);
      const Vec g = Vec::loadu(gt + b * H + k, cnt), o = Vec::loadu(ac + 3 * H + k, cnt);
      (dct * g * i * (one - i)).store(dgr + k, cnt);
      (dct * Vec::loadu(c_prev + b * H + k, cnt) * f * (one - f)).store(dgr + H + k, cnt);
      (dct * i * (one - g * g)).store(dgr + 2 * H + k, cnt);
      (Vec::loadu(dhr + k, cnt) * Vec::loadu(yr + k, cnt) * o * (one - o)).store(dgr + 3 * H + k, cnt);
      (dct * f).store(dcp + k, cnt);  // the same element was read above: in place is safe
    });
    // through ahat: da = LN backward of the gate gradients
    layer_norm_backward_row<scalar_t>(G, dgr, g_hh, ahat + b * G, rstd_a[b], da + b * G);
  }
}

// acc[j] += sum over rows b of x[b, j] * (w ? w[b, j] : 1), for x, w (B, n): the gain and shift
// gradients of one step, added to the running totals. A per-step partial sum first, so a float32
// total over T steps rounds like T sums of B terms, not like one long sum of T*B terms.
template <typename scalar_t>
void add_column_sums(int64_t B, int64_t n, const scalar_t* x, const scalar_t* w, scalar_t* acc) {
  using Vec = Vectorized<scalar_t>;
  vloop<Vec>(n, [&](int64_t k, int64_t cnt) {
    Vec part(0);
    for (int64_t b = 0; b < B; ++b) {
      const Vec v = Vec::loadu(x + b * n + k, cnt);
      part = part + (w ? v * Vec::loadu(w + b * n + k, cnt) : v);
    }
    (Vec::loadu(acc + k, cnt) + part).store(acc + k, cnt);
  });
}

void check(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == dtype, name, " must have dtype ", dtype, ", got ", t.scalar_type());
}

}  // namespace

// All arguments are contiguous CPU tensors of one floating dtype; outputs are written in place.
// a, gi, ahat, act: (B, 4H); c_prev, gt, c_new, chat, y, h_new: (B, H); rstd_a, rstd_c: (B,)
void ln_lstm_forward(double eps, at::Tensor a, at::Tensor gi, at::Tensor g_hh, at::Tensor c_prev,
                     at::Tensor g_c, at::Tensor b_c, at::Tensor ahat, at::Tensor rstd_a,
                     at::Tensor act, at::Tensor gt, at::Tensor c_new, at::Tensor chat,
                     at::Tensor rstd_c, at::Tensor y, at::Tensor h_new) {
  const auto dtype = a.scalar_type();
  const int64_t B = a.size(0), H = c_prev.size(1);
  TORCH_CHECK(a.dim() == 2 && a.size(1) == 4 * H, "a must be (B, 4H)");
  for (auto* p : {&a, &gi, &g_hh, &c_prev, &g_c, &b_c, &ahat, &rstd_a, &act, &gt, &c_new, &chat,
                  &rstd_c, &y, &h_new})
    check(*p, "every argument", dtype);
  AT_DISPATCH_FLOATING_TYPES(dtype, "ln_lstm_forward", [&] {
    at::parallel_for(0, B, row_grain(4 * H), [&](int64_t b0, int64_t b1) {
      forward_rows<scalar_t>(b0, b1, H, eps, a.data_ptr<scalar_t>(), gi.data_ptr<scalar_t>(),
                             g_hh.data_ptr<scalar_t>(), c_prev.data_ptr<scalar_t>(),
                             g_c.data_ptr<scalar_t>(), b_c.data_ptr<scalar_t>(),
                             ahat.data_ptr<scalar_t>(), rstd_a.data_ptr<scalar_t>(),
                             act.data_ptr<scalar_t>(), gt.data_ptr<scalar_t>(),
                             c_new.data_ptr<scalar_t>(), chat.data_ptr<scalar_t>(),
                             rstd_c.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                             h_new.data_ptr<scalar_t>());
    });
  });
}

void ln_lstm_backward(at::Tensor dh, at::Tensor dc, at::Tensor act, at::Tensor gt, at::Tensor y,
                      at::Tensor c_prev, at::Tensor chat, at::Tensor rstd_c, at::Tensor g_c,
                      at::Tensor ahat, at::Tensor rstd_a, at::Tensor g_hh, at::Tensor dg,
                      at::Tensor da, at::Tensor dz, at::Tensor dc_prev, at::Tensor d_g_hh,
                      at::Tensor d_g_c, at::Tensor d_b_c) {
  const auto dtype = act.scalar_type();
  const int64_t B = act.size(0), H = y.size(1);
  TORCH_CHECK(act.dim() == 2 && act.size(1) == 4 * H, "act must be (B, 4H)");
  for (auto* p : {&dh, &dc, &act, &gt, &y, &c_prev, &chat, &rstd_c, &g_c, &ahat, &rstd_a, &g_hh,
                  &dg, &da, &dz, &dc_prev, &d_g_hh, &d_g_c, &d_b_c})
    check(*p, "every argument", dtype);
  AT_DISPATCH_FLOATING_TYPES(dtype, "ln_lstm_backward", [&] {
    at::parallel_for(0, B, row_grain(4 * H), [&](int64_t b0, int64_t b1) {
      backward_rows<scalar_t>(b0, b1, H, dh.data_ptr<scalar_t>(), dc.data_ptr<scalar_t>(),
                              act.data_ptr<scalar_t>(), gt.data_ptr<scalar_t>(),
                              y.data_ptr<scalar_t>(), c_prev.data_ptr<scalar_t>(),
                              chat.data_ptr<scalar_t>(), rstd_c.data_ptr<scalar_t>(),
                              g_c.data_ptr<scalar_t>(), ahat.data_ptr<scalar_t>(),
                              rstd_a.data_ptr<scalar_t>(), g_hh.data_ptr<scalar_t>(),
                              dg.data_ptr<scalar_t>(), da.data_ptr<scalar_t>(),
                              dz.data_ptr<scalar_t>(), dc_prev.data_ptr<scalar_t>());
    });
    // the step's share of the gain and shift gradients (rows done, still in cache)
    add_column_sums<scalar_t>(B, 4 * H, dg.data_ptr<scalar_t>(), ahat.data_ptr<scalar_t>(),
                              d_g_hh.data_ptr<scalar_t>());
    add_column_sums<scalar_t>(B, H, dz.data_ptr<scalar_t>(), chat.data_ptr<scalar_t>(),
                              d_g_c.data_ptr<scalar_t>());
    add_column_sums<scalar_t>(B, H, dz.data_ptr<scalar_t>(), nullptr, d_b_c.data_ptr<scalar_t>());
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("ln_lstm_forward", &ln_lstm_forward, "fused LN-LSTM step, forward (in place)");
  m.def("ln_lstm_backward", &ln_lstm_backward, "fused LN-LSTM step, backward (in place)");
}
