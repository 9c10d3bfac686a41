// Vector helpers the compiled cells share: sigmoid and tanh from one exp, loops and sums over a
// row with a counted tail, layer-norm moments and the row backward of a layer norm, per-step
// column sums, runtime flags as compile-time ones, the argument checks and raw pointers. The
// products with W_hh are in linear.h.
//
// Everything here is inline or a template, in namespace rnnkit::cpu, so every translation unit
// of the extension may include it.

#pragma once

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <type_traits>

namespace rnnkit::cpu {

using at::vec::Vectorized;

// Rows per parallel task: at least ~8K elements, so a batch of a few rows stays on one thread
// instead of paying a thread hand-off per step (a row costs a microsecond or two, a hand-off
// more). at::parallel_for only runs on threads when the extension is compiled with -fopenmp
// (its OpenMP backend is a header template); build.py passes it when torch uses OpenMP.
inline int64_t row_grain(int64_t width) {
  return std::max<int64_t>(1, 8192 / std::max<int64_t>(1, width));
}

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
// should. Not Vectorized::tanh: it calls Sleef's tanh, several times slower than one exp. This
// form loses relative accuracy for |x| near 0 (the absolute error stays one unit of 1.0), which
// nothing downstream of a gate can see.
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

// sum over k of term(k, cnt) (a vector), lanes past the end masked off. Four accumulators: with
// one, every add would wait for the previous add's latency.
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

// acc[j] += sum over rows b of x[b, j] * (w ? w[b, j] : 1), for x, w (B, n): a gain's or shift's
// gradient share of one step, added to the running total. A per-step partial sum first, so a
// float32 total over T steps rounds like T sums of B terms, not like one long sum of T*B terms.
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

// f(std::true_type{}) if flag else f(std::false_type{}): a runtime flag as a compile-time one,
// without writing the argument list of the function it selects twice. Nest it for two flags.
template <typename F>
void with_flag(bool flag, F&& f) {
  if (flag)
    f(std::true_type{});
  else
    f(std::false_type{});
}

inline void check(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == dtype, name, " must have dtype ", dtype, ", got ", t.scalar_type());
}

inline void check(const std::optional<at::Tensor>& t, const char* name, at::ScalarType dtype) {
  if (t) check(*t, name, dtype);
}

// A tensor's data, offset by `off` elements; null for an empty or absent tensor (the buffers a
// cell does not use, e.g. the plain LSTM's layer-norm ones, are passed empty).
template <typename scalar_t>
scalar_t* ptr(const at::Tensor& t, int64_t off = 0) {
  return t.numel() ? t.data_ptr<scalar_t>() + off : nullptr;
}

template <typename scalar_t>
scalar_t* ptr(const std::optional<at::Tensor>& t, int64_t off = 0) {
  return t ? ptr<scalar_t>(*t, off) : nullptr;
}

}  // namespace rnnkit::cpu
