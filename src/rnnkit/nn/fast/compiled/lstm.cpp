// The LSTM step, layer-normalised (Ba et al. 2016) or plain, as two fused CPU loops, one per
// direction, and the whole time loop around them.
//
// Why C++: at T=128, B=32, H=256 the eager step is ~12 small ATen ops, each a separate pass over
// arrays that the step's matrix product has just pushed out of cache, plus Python dispatch; each
// costs 10-30 us. Here one pass per batch row does all of it with the row in L1.
// The step functions do everything between the matrix products (MKL); the loop functions also
// call the products themselves, through ATen, as the Python driver would.
//
// Notation as rnnkit/nn/fused.py: a = W_hh h_in (B, 4H) pre-LN; gi = W_ih x + b (B, 4H);
// gates = gi + g_hh * ahat, ahat = (a - mean(a)) rstd_a; [i, f, g, o] = gates (torch order);
// c' = s(f) c + s(i) tanh(g); chat = (c' - mean(c')) rstd_c; y = tanh(g_c * chat + b_c); h' = s(o) y.
// The plain LSTM (layer_norm false, torch.nn.LSTM's cell): gates = gi + a and y = tanh(c').
//
// The formulas are those of fused.py's _LNLSTMKernel (and rnnkit.scratch); tests tie them.
// Two levels: the whole time loop with the per-step matrix products, zoneout and lengths (what
// the layers use), and one step, which the Python driver calls per step only when
// fused.WHOLE_LOOP is off (the comparison path the bit-equality tests run).

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <type_traits>

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

// The input side's layer norm, when a step is given x = W_ih x_t (B, 4H) rather than gi:
// gi = g_ih * xhat + shift, xhat = (x - mean) rstd (Ba et al.'s LN on the input projection).
// Doing it here, row by row, saves a full pass over (T, B, 4H) arrays each way. g_ih null: the
// step is given gi itself. Per step: mean, rstd (B,) written by forward and read by backward;
// backward's xhat (B, 4H) scratch, dx (B, 4H) the gradient of x, d_g_ih and d_shift (4H,) sums.
template <typename scalar_t>
struct InputLN {
  const scalar_t* g_ih = nullptr;
  const scalar_t* shift = nullptr;
  scalar_t* mean = nullptr;
  scalar_t* rstd = nullptr;
  scalar_t* xhat = nullptr;
  scalar_t* dx = nullptr;
  scalar_t* d_g_ih = nullptr;
  scalar_t* d_shift = nullptr;
};

// LN false: the plain LSTM (torch.nn.LSTM's cell): gates = gi + a, y = tanh(c'); then ahat, chat,
// the rstds, g_hh, g_c and b_c are neither read nor written (they may be null).
template <typename scalar_t, bool LN>
void forward_rows(int64_t b0, int64_t b1, int64_t H, double eps,
                  const scalar_t* a, const scalar_t* gi, const scalar_t* g_hh,
                  const scalar_t* c_prev, const scalar_t* g_c, const scalar_t* b_c,
                  scalar_t* ahat, scalar_t* rstd_a, scalar_t* act, scalar_t* gt, scalar_t* c_new,
                  scalar_t* chat, scalar_t* rstd_c, scalar_t* y, scalar_t* h_new,
                  const InputLN<scalar_t>& in) {
  using Vec = Vectorized<scalar_t>;
  const int64_t G = 4 * H;
  for (int64_t b = b0; b < b1; ++b) {
    const scalar_t* ar = a + b * G;
    const scalar_t* gr = gi + b * G;  // gi, or x when in.g_ih
    scalar_t* ah = ahat + b * G;
    scalar_t* ac = act + b * G;
    scalar_t mean = 0, rstd = 0, mean_x = 0, rstd_x = 0;
    if (in.g_ih) {
      moments(gr, G, eps, mean_x, rstd_x);
      in.mean[b] = mean_x;
      in.rstd[b] = rstd_x;
    }
    const Vec mx(mean_x), rx(rstd_x);
    if (LN) {
      moments(ar, G, eps, mean, rstd);
      rstd_a[b] = rstd;
    }
    const Vec m(mean), r(rstd);
    // ahat, and the gates block by block: s() on i, f, o; tanh on g (its act block is unused)
    for (int64_t q = 0; q < 4; ++q) {
      const int64_t off = q * H;
      scalar_t* dst = q == 2 ? gt + b * H : ac + off;
      vloop<Vec>(H, [&](int64_t k, int64_t cnt) {
        Vec g_in = Vec::loadu(gr + off + k, cnt);
        if (in.g_ih)
          g_in = Vec::loadu(in.g_ih + off + k, cnt) * ((g_in - mx) * rx) +
                 Vec::loadu(in.shift + off + k, cnt);
        Vec pre;
        if (LN) {
          const Vec z = (Vec::loadu(ar + off + k, cnt) - m) * r;
          z.store(ah + off + k, cnt);
          pre = g_in + Vec::loadu(g_hh + off + k, cnt) * z;
        } else {
          pre = g_in + Vec::loadu(ar + off + k, cnt);
        }
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
    if (LN) {
      moments(cn, H, eps, mean, rstd);
      rstd_c[b] = rstd;
    }
    const Vec mc(mean), rc(rstd);
    vloop<Vec>(H, [&](int64_t k, int64_t cnt) {
      Vec yy;
      if (LN) {
        const Vec z = (Vec::loadu(cn + k, cnt) - mc) * rc;
        z.store(chat + b * H + k, cnt);
        yy = vtanh(Vec::loadu(g_c + k, cnt) * z + Vec::loadu(b_c + k, cnt));
      } else {
        yy = vtanh(Vec::loadu(cn + k, cnt));
      }
      yy.store(y + b * H + k, cnt);
      (Vec::loadu(ac + 3 * H + k, cnt) * yy).store(h_new + b * H + k, cnt);
    });
  }
}

// Backward of one step. In: dh, dc (gradients on h', c'), and what forward kept (x: the step's
// input projection, read only with the input-side layer norm).
// Out: dg = d gates (= d gi) (B, 4H); da = d a (B, 4H); dz = d (g_c chat + b_c) (B, H), scratch
// for the gain and shift gradients; dc_prev = d c (B, H); with the input LN, in.dx and in.xhat.
// LN false: the plain LSTM; da is dg itself (not written), dz and the LN inputs are unused.
template <typename scalar_t, bool LN>
void backward_rows(int64_t b0, int64_t b1, int64_t H,
                   const scalar_t* dh, const scalar_t* dc, const scalar_t* act, const scalar_t* gt,
                   const scalar_t* y, const scalar_t* c_prev, const scalar_t* chat,
                   const scalar_t* rstd_c, const scalar_t* g_c, const scalar_t* ahat,
                   const scalar_t* rstd_a, const scalar_t* g_hh,
                   scalar_t* dg, scalar_t* da, scalar_t* dz, scalar_t* dc_prev,
                   const scalar_t* x, const InputLN<scalar_t>& in) {
  using Vec = Vectorized<scalar_t>;
  const int64_t G = 4 * H;
  const Vec one(1);
  for (int64_t b = b0; b < b1; ++b) {
    const scalar_t* ac = act + b * G;
    const scalar_t* yr = y + b * H;
    const scalar_t* dhr = dh + b * H;
    scalar_t* dgr = dg + b * G;
    scalar_t* dcp = dc_prev + b * H;
    // dz = dh o (1 - y^2), the gradient of g_c chat + b_c (plain: of c', straight into dcp)
    scalar_t* dzr = LN ? dz + b * H : dcp;
    vloop<Vec>(H, [&](int64_t k, int64_t cnt) {
      const Vec yy = Vec::loadu(yr + k, cnt);
      (Vec::loadu(dhr + k, cnt) * Vec::loadu(ac + 3 * H + k, cnt) * (one - yy * yy))
          .store(dzr + k, cnt);
    });
    // through chat: dc' = LN backward of dz (written to dc_prev's row, used as scratch) + dc
    if (LN) layer_norm_backward_row<scalar_t>(H, dzr, g_c, chat + b * H, rstd_c[b], dcp);
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
    // through ahat: da = LN backward of the gate gradients (plain: da = dg)
    if (LN) layer_norm_backward_row<scalar_t>(G, dgr, g_hh, ahat + b * G, rstd_a[b], da + b * G);
    if (in.g_ih) {  // through the input LN: dx = LN backward of the same gate gradients
      const Vec mx(in.mean[b]), rx(in.rstd[b]);
      scalar_t* xh = in.xhat + b * G;
      vloop<Vec>(G, [&](int64_t k, int64_t cnt) {
        ((Vec::loadu(x + b * G + k, cnt) - mx) * rx).store(xh + k, cnt);
      });
      layer_norm_backward_row<scalar_t>(G, dgr, in.g_ih, xh, in.rstd[b], in.dx + b * G);
    }
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

// f(std::true_type{}) if ln else f(std::false_type{}): the runtime layer-norm flag as the
// compile-time LN of the row functions, without writing their argument lists twice.
template <typename F>
void with_ln(bool ln, F&& f) {
  if (ln)
    f(std::true_type{});
  else
    f(std::false_type{});
}

// One step over all B rows (rows split over threads); pointers to (B, ·) blocks as forward_rows.
template <typename scalar_t>
void forward_step(bool ln, int64_t B, int64_t H, double eps, const scalar_t* a, const scalar_t* gi,
                  const scalar_t* g_hh, const scalar_t* c_prev, const scalar_t* g_c,
                  const scalar_t* b_c, scalar_t* ahat, scalar_t* rstd_a, scalar_t* act, scalar_t* gt,
                  scalar_t* c_new, scalar_t* chat, scalar_t* rstd_c, scalar_t* y, scalar_t* h_new,
                  const InputLN<scalar_t>& in = {}) {
  at::parallel_for(0, B, row_grain(4 * H), [&](int64_t b0, int64_t b1) {
    with_ln(ln, [&](auto LN) {
      forward_rows<scalar_t, decltype(LN)::value>(b0, b1, H, eps, a, gi, g_hh, c_prev, g_c, b_c,
                                                  ahat, rstd_a, act, gt, c_new, chat, rstd_c, y,
                                                  h_new, in);
    });
  });
}

// One backward step over all B rows, then its share of the gain and shift gradients (the rows
// are done and still in cache).
template <typename scalar_t>
void backward_step(bool ln, int64_t B, int64_t H, const scalar_t* dh, const scalar_t* dc,
                   const scalar_t* act, const scalar_t* gt, const scalar_t* y,
                   const scalar_t* c_prev, const scalar_t* chat, const scalar_t* rstd_c,
                   const scalar_t* g_c, const scalar_t* ahat, const scalar_t* rstd_a,
                   const scalar_t* g_hh, scalar_t* dg, scalar_t* da, scalar_t* dz,
                   scalar_t* dc_prev, scalar_t* d_g_hh, scalar_t* d_g_c, scalar_t* d_b_c,
                   const scalar_t* x = nullptr, const InputLN<scalar_t>& in = {}) {
  at::parallel_for(0, B, row_grain(4 * H), [&](int64_t b0, int64_t b1) {
    with_ln(ln, [&](auto LN) {
      backward_rows<scalar_t, decltype(LN)::value>(b0, b1, H, dh, dc, act, gt, y, c_prev, chat,
                                                   rstd_c, g_c, ahat, rstd_a, g_hh, dg, da, dz,
                                                   dc_prev, x, in);
    });
  });
  if (!ln) return;  // the plain LSTM has no gains or shifts
  add_column_sums<scalar_t>(B, 4 * H, dg, ahat, d_g_hh);
  add_column_sums<scalar_t>(B, H, dz, chat, d_g_c);
  add_column_sums<scalar_t>(B, H, dz, nullptr, d_b_c);
  if (in.g_ih) {  // d g_ih = sum dg xhat, d shift = sum dg
    add_column_sums<scalar_t>(B, 4 * H, dg, in.xhat, in.d_g_ih);
    add_column_sums<scalar_t>(B, 4 * H, dg, nullptr, in.d_shift);
  }
}

void check(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == dtype, name, " must have dtype ", dtype, ", got ", t.scalar_type());
}

// A tensor's data, offset by `off` elements; null for an empty tensor (the buffers the plain LSTM
// does not use are passed empty).
template <typename scalar_t>
scalar_t* ptr(const at::Tensor& t, int64_t off = 0) {
  return t.numel() ? t.data_ptr<scalar_t>() + off : nullptr;
}

// MKL's packed-weight GEMM (what fused.py's _Product uses from Python), through the dispatcher.
at::Tensor mkl_linear(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& w,
                      int64_t batch) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mkl::_mkl_linear", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const std::optional<at::Tensor>&, int64_t)>();
  return op.call(x, packed, w, std::nullopt, batch);
}

}  // namespace

// All arguments are contiguous CPU tensors of one floating dtype; outputs are written in place.
// a, gi, ahat, act: (B, 4H); c_prev, gt, c_new, chat, y, h_new: (B, H); rstd_a, rstd_c: (B,).
// layer_norm false: the plain LSTM; ahat, chat, the rstds and the gains may then be empty.
void lstm_step_forward(bool layer_norm, double eps, at::Tensor a, at::Tensor gi, at::Tensor g_hh,
                       at::Tensor c_prev, at::Tensor g_c, at::Tensor b_c, at::Tensor ahat,
                       at::Tensor rstd_a, at::Tensor act, at::Tensor gt, at::Tensor c_new,
                       at::Tensor chat, at::Tensor rstd_c, at::Tensor y, at::Tensor h_new) {
  const auto dtype = a.scalar_type();
  const int64_t B = a.size(0), H = c_prev.size(1);
  TORCH_CHECK(a.dim() == 2 && a.size(1) == 4 * H, "a must be (B, 4H)");
  for (auto* p : {&a, &gi, &g_hh, &c_prev, &g_c, &b_c, &ahat, &rstd_a, &act, &gt, &c_new, &chat,
                  &rstd_c, &y, &h_new})
    check(*p, "every argument", dtype);
  AT_DISPATCH_FLOATING_TYPES(dtype, "lstm_step_forward", [&] {
    forward_step<scalar_t>(layer_norm, B, H, eps, ptr<scalar_t>(a), ptr<scalar_t>(gi),
                           ptr<scalar_t>(g_hh), ptr<scalar_t>(c_prev), ptr<scalar_t>(g_c),
                           ptr<scalar_t>(b_c), ptr<scalar_t>(ahat), ptr<scalar_t>(rstd_a),
                           ptr<scalar_t>(act), ptr<scalar_t>(gt), ptr<scalar_t>(c_new),
                           ptr<scalar_t>(chat), ptr<scalar_t>(rstd_c), ptr<scalar_t>(y),
                           ptr<scalar_t>(h_new));
  });
}

// The plain LSTM (layer_norm false) passes da = dg and leaves the LN inputs and dz empty.
void lstm_step_backward(bool layer_norm, at::Tensor dh, at::Tensor dc, at::Tensor act,
                        at::Tensor gt, at::Tensor y, at::Tensor c_prev, at::Tensor chat,
                        at::Tensor rstd_c, at::Tensor g_c, at::Tensor ahat, at::Tensor rstd_a,
                        at::Tensor g_hh, at::Tensor dg, at::Tensor da, at::Tensor dz,
                        at::Tensor dc_prev, at::Tensor d_g_hh, at::Tensor d_g_c,
                        at::Tensor d_b_c) {
  const auto dtype = act.scalar_type();
  const int64_t B = act.size(0), H = y.size(1);
  TORCH_CHECK(act.dim() == 2 && act.size(1) == 4 * H, "act must be (B, 4H)");
  for (auto* p : {&dh, &dc, &act, &gt, &y, &c_prev, &chat, &rstd_c, &g_c, &ahat, &rstd_a, &g_hh,
                  &dg, &da, &dz, &dc_prev, &d_g_hh, &d_g_c, &d_b_c})
    check(*p, "every argument", dtype);
  AT_DISPATCH_FLOATING_TYPES(dtype, "lstm_step_backward", [&] {
    backward_step<scalar_t>(layer_norm, B, H, ptr<scalar_t>(dh), ptr<scalar_t>(dc),
                            ptr<scalar_t>(act), ptr<scalar_t>(gt), ptr<scalar_t>(y),
                            ptr<scalar_t>(c_prev), ptr<scalar_t>(chat), ptr<scalar_t>(rstd_c), ptr<scalar_t>(g_c),
                            ptr<scalar_t>(ahat), ptr<scalar_t>(rstd_a), ptr<scalar_t>(g_hh),
                            ptr<scalar_t>(dg), ptr<scalar_t>(da), ptr<scalar_t>(dz),
                            ptr<scalar_t>(dc_prev), ptr<scalar_t>(d_g_hh), ptr<scalar_t>(d_g_c),
                            ptr<scalar_t>(d_b_c));
  });
}

// ---------------------------------------------------------------------------------------------
// The whole time loop. It does what fused.py's Python driver does, step for step and op for op
// (the same products, the same order of adds, zoneout and lengths blended the same way), without
// a Python round trip and a dozen tensor views per step: at B=32, H=256 those cost about a
// tenth of a step.
//
// States S_h, S_c (T+1, B, H): step t reads j = t and writes j = t + 1 going forward; in reverse
// it reads j = t + 1 and writes j = t. The per-step buffers (ahat, act: (R, B, 4H); gt, chat, y:
// (R, B, H); rstd_a, rstd_c: (R, B)) have R = T rows, or R = 1 when nothing is kept for backward.
// The product a = h_in W_hh^T: MKL's packed GEMM when `packed` (w_mm the packed weight, w_hh its
// origin), else at::mm into ahat's row with w_mm = W_hh^T (H, 4H) contiguous.
// Zoneout / lengths: keep_h, keep_c (T, B, 1 or H) or none; given either, the step writes its new
// states into new_h, new_c (T, B, H) and the kept state s_t = lerp(s_{t-1}, s'_t, k_t) goes to S.
// ---------------------------------------------------------------------------------------------

void lstm_forward_loop(bool layer_norm, double eps, bool reverse, at::Tensor gi, at::Tensor w_hh,
                       at::Tensor w_mm, bool packed, std::optional<at::Tensor> hidden_mask,
                       std::optional<at::Tensor> keep_h, std::optional<at::Tensor> keep_c,
                       std::optional<at::Tensor> new_h, std::optional<at::Tensor> new_c,
                       at::Tensor S_h, at::Tensor S_c, at::Tensor g_hh, at::Tensor g_c,
                       at::Tensor b_c, at::Tensor ahat, at::Tensor rstd_a, at::Tensor act,
                       at::Tensor gt, at::Tensor chat, at::Tensor rstd_c, at::Tensor y,
                       std::optional<at::Tensor> g_ih, std::optional<at::Tensor> shift,
                       std::optional<at::Tensor> stat_x) {
  const auto dtype = gi.scalar_type();
  const int64_t T = gi.size(0), B = gi.size(1), H = S_h.size(2), G = 4 * H, R = act.size(0);
  TORCH_CHECK(gi.dim() == 3 && gi.size(2) == G, "gi must be (T, B, 4H)");
  TORCH_CHECK(S_h.size(0) == T + 1 && S_c.size(0) == T + 1, "S_h, S_c must be (T + 1, B, H)");
  TORCH_CHECK(R == T || R == 1, "the per-step buffers must have T or 1 rows");
  for (auto* p : {&gi, &S_h, &S_c, &g_hh, &g_c, &b_c, &ahat, &rstd_a, &act, &gt, &chat, &rstd_c,
                  &y})
    check(*p, "every argument", dtype);
  const bool blend = new_h.has_value();
  TORCH_CHECK(blend == new_c.has_value(), "new_h and new_c go together");
  if (blend) {
    check(*new_h, "new_h", dtype);
    check(*new_c, "new_c", dtype);
  }
  const bool input_ln = g_ih.has_value();
  if (input_ln) {
    TORCH_CHECK(shift && stat_x, "g_ih, shift and stat_x go together");
    for (auto* p : {&*g_ih, &*shift, &*stat_x}) check(*p, "g_ih, shift, stat_x", dtype);
    TORCH_CHECK(stat_x->dim() == 3 && stat_x->size(0) == 2 && stat_x->size(1) == R,
                "stat_x must be (2, R, B)");
  }
  at::Tensor h_in = hidden_mask ? at::empty({B, H}, gi.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(dtype, "lstm_forward_loop", [&] {
    for (int64_t n = 0; n < T; ++n) {
      const int64_t t = reverse ? T - 1 - n : n, r = R == T ? t : 0;
      const int64_t jp = reverse ? t + 1 : t, jn = reverse ? t : t + 1;
      at::Tensor h_prev = S_h.select(0, jp);
      const at::Tensor& x = hidden_mask ? at::mul_out(h_in, h_prev, *hidden_mask) : h_prev;
      at::Tensor ahat_r = ahat.select(0, ahat.size(0) == 1 ? 0 : r);  // plain LSTM: scratch
      at::Tensor a = packed ? mkl_linear(x, w_mm, w_hh, B) : at::mm_out(ahat_r, x, w_mm);
      InputLN<scalar_t> in;
      if (input_ln) {
        in.g_ih = ptr<scalar_t>(*g_ih);
        in.shift = ptr<scalar_t>(*shift);
        in.mean = ptr<scalar_t>(*stat_x, r * B);
        in.rstd = ptr<scalar_t>(*stat_x, (R + r) * B);
      }
      forward_step<scalar_t>(
          layer_norm, B, H, eps, ptr<scalar_t>(a), ptr<scalar_t>(gi, t * B * G),
          ptr<scalar_t>(g_hh), ptr<scalar_t>(S_c, jp * B * H), ptr<scalar_t>(g_c),
          ptr<scalar_t>(b_c), ptr<scalar_t>(ahat_r), ptr<scalar_t>(rstd_a, r * B),
          ptr<scalar_t>(act, r * B * G), ptr<scalar_t>(gt, r * B * H),
          blend ? ptr<scalar_t>(*new_c, t * B * H) : ptr<scalar_t>(S_c, jn * B * H),
          ptr<scalar_t>(chat, r * B * H), ptr<scalar_t>(rstd_c, r * B), ptr<scalar_t>(y, r * B * H),
          blend ? ptr<scalar_t>(*new_h, t * B * H) : ptr<scalar_t>(S_h, jn * B * H), in);
      if (!blend) continue;
      // zoneout / lengths: s_t = s_{t-1} + k_t (s'_t - s_{t-1}), the driver's torch.lerp
      for (int k = 0; k < 2; ++k) {
        const at::Tensor& S = k == 0 ? S_h : S_c;
        const at::Tensor fresh = (k == 0 ? *new_h : *new_c).select(0, t);
        const std::optional<at::Tensor>& keep = k == 0 ? keep_h : keep_c;
        at::Tensor dst = S.select(0, jn);
        if (keep) {
          at::lerp_out(dst, S.select(0, jp), fresh, keep->select(0, t));
        } else {
          dst.copy_(fresh);
        }
      }
    }
  });
}

// The backward over all T steps, in the reverse of the forward's order. dy (T, B, H): the output
// gradient (any strides); dh_last, dc_last (B, H): the gradients on the final states; c_prev
// (T, B, H): the cell state each step read; keep_h, keep_c as in the forward; back_packed,
// back_origin: W_hh^T packed for MKL and its origin (the product da W_hh by packed GEMM), or none
// for at::mm with w_hh. Writes dg, da (T, B, 4H) and adds to the gain and shift gradients;
// returns the gradients on (h0, c0).
std::vector<at::Tensor> lstm_backward_loop(
    bool layer_norm, bool reverse, at::Tensor dy, at::Tensor dh_last, at::Tensor dc_last,
    at::Tensor w_hh,
    std::optional<at::Tensor> back_packed, std::optional<at::Tensor> back_origin,
    std::optional<at::Tensor> hidden_mask, std::optional<at::Tensor> keep_h,
    std::optional<at::Tensor> keep_c, at::Tensor act, at::Tensor gt, at::Tensor y,
    at::Tensor c_prev, at::Tensor chat, at::Tensor rstd_c, at::Tensor g_c, at::Tensor ahat,
    at::Tensor rstd_a, at::Tensor g_hh, at::Tensor dg, at::Tensor da, at::Tensor dz,
    at::Tensor d_g_hh, at::Tensor d_g_c, at::Tensor d_b_c, std::optional<at::Tensor> x,
    std::optional<at::Tensor> g_ih, std::optional<at::Tensor> stat_x,
    std::optional<at::Tensor> xhat_x, std::optional<at::Tensor> dx,
    std::optional<at::Tensor> d_g_ih, std::optional<at::Tensor> d_shift) {
  const auto dtype = act.scalar_type();
  const int64_t T = act.size(0), B = act.size(1), H = y.size(2), G = 4 * H;
  TORCH_CHECK(act.dim() == 3 && act.size(2) == G, "act must be (T, B, 4H)");
  TORCH_CHECK(dy.dim() == 3 && dy.size(0) == T, "dy must be (T, B, H)");
  for (auto* p : {&act, &gt, &y, &c_prev, &chat, &rstd_c, &g_c, &ahat, &rstd_a, &g_hh, &dg, &da,
                  &dz, &d_g_hh, &d_g_c, &d_b_c})
    check(*p, "every argument", dtype);
  TORCH_CHECK(dg.dim() == 3 && (dg.size(0) == T || dg.size(0) == 1), "dg must be (T or 1, B, 4H)");
  const int64_t dg_rows = dg.size(0);
  const bool input_ln = g_ih.has_value();
  if (input_ln) {
    TORCH_CHECK(x && stat_x && xhat_x && dx && d_g_ih && d_shift,
                "the input layer norm's arguments go together");
    for (auto* p : {&*x, &*g_ih, &*stat_x, &*xhat_x, &*dx, &*d_g_ih, &*d_shift})
      check(*p, "the input layer norm's arguments", dtype);
  }
  // ping-pong buffers: the gradients on the state after the step being undone, and before it
  const int64_t t0 = reverse ? 0 : T - 1;
  at::Tensor dh = at::add(dh_last, dy.select(0, t0)).contiguous();
  at::Tensor dc = dc_last.contiguous().clone();
  at::Tensor dh_prev = at::empty_like(dh), dc_prev = at::empty_like(dc);
  AT_DISPATCH_FLOATING_TYPES(dtype, "lstm_backward_loop", [&] {
    for (int64_t n = 0; n < T; ++n) {
      const int64_t t = reverse ? n : T - 1 - n;
      // zoneout / lengths: the gradient on s_t splits into k_t d (to the new state s'_t) and
      // d - k_t d (held over to s_{t-1}), as in the driver
      at::Tensor dh_new = keep_h ? at::mul(dh, keep_h->select(0, t)) : dh;
      at::Tensor dc_new = keep_c ? at::mul(dc, keep_c->select(0, t)) : dc;
      at::Tensor hold_h = keep_h ? at::sub(dh, dh_new) : at::Tensor();
      at::Tensor hold_c = keep_c ? at::sub(dc, dc_new) : at::Tensor();
      InputLN<scalar_t> in;
      if (input_ln) {
        in.g_ih = ptr<scalar_t>(*g_ih);
        in.mean = ptr<scalar_t>(*stat_x, t * B);
        in.rstd = ptr<scalar_t>(*stat_x, (T + t) * B);
        in.xhat = ptr<scalar_t>(*xhat_x);
        in.dx = ptr<scalar_t>(*dx, t * B * G);
        in.d_g_ih = ptr<scalar_t>(*d_g_ih);
        in.d_shift = ptr<scalar_t>(*d_shift);
      }
      backward_step<scalar_t>(
          layer_norm, B, H, ptr<scalar_t>(dh_new), ptr<scalar_t>(dc_new),
          ptr<scalar_t>(act, t * B * G), ptr<scalar_t>(gt, t * B * H), ptr<scalar_t>(y, t * B * H),
          ptr<scalar_t>(c_prev, t * B * H), ptr<scalar_t>(chat, t * B * H),
          ptr<scalar_t>(rstd_c, t * B), ptr<scalar_t>(g_c), ptr<scalar_t>(ahat, t * B * G),
          ptr<scalar_t>(rstd_a, t * B), ptr<scalar_t>(g_hh),
          ptr<scalar_t>(dg, (dg_rows == T ? t : 0) * B * G), ptr<scalar_t>(da, t * B * G),
          ptr<scalar_t>(dz), ptr<scalar_t>(dc_prev), ptr<scalar_t>(d_g_hh), ptr<scalar_t>(d_g_c),
          ptr<scalar_t>(d_b_c), input_ln ? ptr<scalar_t>(*x, t * B * G) : nullptr, in);
      // the h gradient before step t: through W_hh, plus the previous step's output gradient
      const at::Tensor da_t = da.select(0, t);
      const bool more = n + 1 < T;
      const int64_t t_next = reverse ? t + 1 : t - 1;
      at::Tensor dh_next = dh_prev;
      if (back_packed) {  // da W_hh by MKL's packed GEMM: a new tensor
        dh_next = mkl_linear(da_t, *back_packed, *back_origin, B);
        if (hidden_mask) dh_next.mul_(*hidden_mask);
        if (more) dh_next.add_(dy.select(0, t_next));
      } else if (!hidden_mask && more) {
        at::addmm_out(dh_next, dy.select(0, t_next), da_t, w_hh);
      } else {
        at::mm_out(dh_next, da_t, w_hh);
        if (hidden_mask) dh_next.mul_(*hidden_mask);
        if (more) dh_next.add_(dy.select(0, t_next));
      }
      if (keep_h) dh_next.add_(hold_h);
      if (keep_c) dc_prev.add_(hold_c);
      dh_prev = dh;  // free for the next step (unpacked products write into it)
      dh = dh_next;
      std::swap(dc, dc_prev);
    }
  });
  return {dh, dc};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // Nothing here touches Python objects once the arguments are converted, so the GIL is let go
  // for the call, as ATen's own ops do: layers in several Python threads run at once.
  using release = py::call_guard<py::gil_scoped_release>;
  m.def("lstm_step_forward", &lstm_step_forward, "fused (LN-)LSTM step, forward (in place)",
        release());
  m.def("lstm_step_backward", &lstm_step_backward, "fused (LN-)LSTM step, backward (in place)",
        release());
  m.def("lstm_forward_loop", &lstm_forward_loop, "(LN-)LSTM forward over all steps (in place)",
        release());
  m.def("lstm_backward_loop", &lstm_backward_loop,
        "(LN-)LSTM backward over all steps; returns the gradients on (h0, c0)", release());
}
