// The LSTM, layer-normalised (Ba et al. 2016) or plain, as two fused CPU loops over batch rows, one
// per direction of the step, and the whole time loop around them.
//
// Why C++: at small shapes (benchmarks/custom_cells.py's "small" one) the eager step is a dozen
// small ATen ops between the matrix products, each a separate pass over arrays that the step's
// product has just pushed out of cache, plus Python dispatch. Here one pass per batch row does all
// of it with the row in L1, and the time loop runs without a Python round trip per step. The
// matrix products stay ATen's (MKL).
//
// Notation as rnnkit/nn/fast/lstm.py: a = W_hh h_in (B, 4H) pre-LN; gi = W_ih x + b (B, 4H);
// gates = gi + gamma_hh * ahat, ahat = (a - mean(a)) rstd_a; [i, f, g, o] = gates (torch order);
// c' = s(f) c + s(i) tanh(g); chat = (c' - mean(c')) rstd_c; y = tanh(gamma_c * chat + beta_c);
// h' = s(o) y. The plain LSTM (layer_norm false, torch.nn.LSTM's cell): gates = gi + a and
// y = tanh(c'). The formulas are those of the eager kernels in lstm.py (and rnnkit.scratch);
// tests/nn/fast/compiled/test_lstm.py ties the two.

#include "linear.h"

#include <type_traits>

namespace rnnkit::cpu {
namespace {

// ---------------------------------------------------------------------------------------------
// One step over rows b0..b1. Pointers to (B, .) blocks, grouped by role.
// ---------------------------------------------------------------------------------------------

// The layer norms' gains and shift: gamma_hh (4H), gamma_c, beta_c (H); null for the plain LSTM.
template <typename scalar_t>
struct Gains {
  const scalar_t* gamma_hh = nullptr;
  const scalar_t* gamma_c = nullptr;
  const scalar_t* beta_c = nullptr;
};

// What one step reads and keeps: gi (B, 4H) (W_ih x with the input layer norm); c_prev (B, H);
// act (B, 4H) = s(i), s(f), (unused), s(o); gt = tanh(g), y (B, H); with layer norm ahat (B, 4H),
// chat (B, H) and their rstds (B,). Forward writes the kept ones; backward reads them.
template <typename scalar_t>
struct StepBlocks {
  const scalar_t* gi;
  const scalar_t* c_prev;
  scalar_t* act;
  scalar_t* gt;
  scalar_t* y;
  scalar_t* ahat;
  scalar_t* rstd_a;
  scalar_t* chat;
  scalar_t* rstd_c;
};

// Backward's outputs for one step: dg = d gates (= d gi) (B, 4H); da = d a (B, 4H); dz (B, H)
// scratch, the gradient of gamma_c chat + beta_c; dc_prev (B, H); the gains' gradients (added to).
template <typename scalar_t>
struct StepGrads {
  scalar_t* dg;
  scalar_t* da;
  scalar_t* dz;
  scalar_t* dc_prev;
  scalar_t* d_gamma_hh;
  scalar_t* d_gamma_c;
  scalar_t* d_beta_c;
};

// The input side's layer norm, when a step is given x = W_ih x_t (B, 4H) rather than gi:
// gi = gamma_ih * xhat + shift, xhat = (x - mean) rstd (Ba et al.'s LN on the input projection).
// Doing it here, row by row, saves a full pass over (T, B, 4H) arrays each way. gamma_ih null: the
// step is given gi itself. Per step: mean, rstd (B,) written by forward and read by backward;
// backward's xhat (B, 4H) scratch, dx (B, 4H) the gradient of x, d_gamma_ih and d_shift (4H,) sums.
template <typename scalar_t>
struct InputLN {
  const scalar_t* gamma_ih = nullptr;
  const scalar_t* shift = nullptr;
  scalar_t* mean = nullptr;
  scalar_t* rstd = nullptr;
  scalar_t* xhat = nullptr;
  scalar_t* dx = nullptr;
  scalar_t* d_gamma_ih = nullptr;
  scalar_t* d_shift = nullptr;
};

// LN false: the plain LSTM: gates = gi + a, y = tanh(c'); then ahat, chat, the rstds and the
// gains are neither read nor written (they may be null). SAVE false (no backward to come): what
// only the backward reads (ahat, chat, y, the rstds, the input LN's moments) is not written.
template <typename scalar_t, bool LN, bool SAVE>
void forward_rows(int64_t b0, int64_t b1, int64_t H, double eps, const scalar_t* a,
                  const Gains<scalar_t>& w, const StepBlocks<scalar_t>& s, scalar_t* c_new,
                  scalar_t* h_new, const InputLN<scalar_t>& in) {
  using Vec = Vectorized<scalar_t>;
  const int64_t G = 4 * H;
  for (int64_t b = b0; b < b1; ++b) {
    const scalar_t* ar = a + b * G;
    const scalar_t* gr = s.gi + b * G;  // gi, or x when in.gamma_ih
    scalar_t* ah = s.ahat + b * G;
    scalar_t* ac = s.act + b * G;
    scalar_t mean = 0, rstd = 0, mean_x = 0, rstd_x = 0;
    if (in.gamma_ih) {
      moments(gr, G, eps, mean_x, rstd_x);
      if (SAVE) {
        in.mean[b] = mean_x;
        in.rstd[b] = rstd_x;
      }
    }
    const Vec mx(mean_x), rx(rstd_x);
    if (LN) {
      moments(ar, G, eps, mean, rstd);
      if (SAVE) s.rstd_a[b] = rstd;
    }
    const Vec m(mean), r(rstd);
    // ahat, and the gates block by block: s() on i, f, o; tanh on g (its act block is unused)
    for (int64_t q = 0; q < 4; ++q) {
      const int64_t off = q * H;
      scalar_t* dst = q == 2 ? s.gt + b * H : ac + off;
      vloop<Vec>(H, [&](int64_t k, int64_t cnt) {
        Vec g_in = Vec::loadu(gr + off + k, cnt);
        if (in.gamma_ih)
          g_in = Vec::loadu(in.gamma_ih + off + k, cnt) * ((g_in - mx) * rx) +
                 Vec::loadu(in.shift + off + k, cnt);
        Vec pre;
        if (LN) {
          const Vec z = (Vec::loadu(ar + off + k, cnt) - m) * r;
          if (SAVE) z.store(ah + off + k, cnt);
          pre = g_in + Vec::loadu(w.gamma_hh + off + k, cnt) * z;
        } else {
          pre = g_in + Vec::loadu(ar + off + k, cnt);
        }
        (q == 2 ? vtanh(pre) : vsigmoid(pre)).store(dst + k, cnt);
      });
    }
    // c' = f c + i g, then its layer norm
    const scalar_t* cp = s.c_prev + b * H;
    scalar_t* cn = c_new + b * H;
    const scalar_t* gg = s.gt + b * H;
    vloop<Vec>(H, [&](int64_t k, int64_t cnt) {
      const Vec c = Vec::loadu(ac + H + k, cnt) * Vec::loadu(cp + k, cnt) +
                    Vec::loadu(ac + k, cnt) * Vec::loadu(gg + k, cnt);
      c.store(cn + k, cnt);
    });
    if (LN) {
      moments(cn, H, eps, mean, rstd);
      if (SAVE) s.rstd_c[b] = rstd;
    }
    const Vec mc(mean), rc(rstd);
    vloop<Vec>(H, [&](int64_t k, int64_t cnt) {
      Vec yy;
      if (LN) {
        const Vec z = (Vec::loadu(cn + k, cnt) - mc) * rc;
        if (SAVE) z.store(s.chat + b * H + k, cnt);
        yy = vtanh(Vec::loadu(w.gamma_c + k, cnt) * z + Vec::loadu(w.beta_c + k, cnt));
      } else {
        yy = vtanh(Vec::loadu(cn + k, cnt));
      }
      if (SAVE) yy.store(s.y + b * H + k, cnt);
      (Vec::loadu(ac + 3 * H + k, cnt) * yy).store(h_new + b * H + k, cnt);
    });
  }
}

// Backward of one step, rows b0..b1. In: dh, dc (gradients on h', c') and what forward kept.
// LN false: the plain LSTM; da is dg itself (not written), dz and the LN inputs are unused.
template <typename scalar_t, bool LN>
void backward_rows(int64_t b0, int64_t b1, int64_t H, const Gains<scalar_t>& w,
                   const StepBlocks<scalar_t>& s, const scalar_t* dh, const scalar_t* dc,
                   const StepGrads<scalar_t>& d, const InputLN<scalar_t>& in) {
  using Vec = Vectorized<scalar_t>;
  const int64_t G = 4 * H;
  const Vec one(1);
  for (int64_t b = b0; b < b1; ++b) {
    const scalar_t* ac = s.act + b * G;
    const scalar_t* yr = s.y + b * H;
    const scalar_t* dhr = dh + b * H;
    scalar_t* dgr = d.dg + b * G;
    scalar_t* dcp = d.dc_prev + b * H;
    // dz = dh o (1 - y^2), the gradient of gamma_c chat + beta_c (plain: of c', straight into dcp)
    scalar_t* dzr = LN ? d.dz + b * H : dcp;
    vloop<Vec>(H, [&](int64_t k, int64_t cnt) {
      const Vec yy = Vec::loadu(yr + k, cnt);
      (Vec::loadu(dhr + k, cnt) * Vec::loadu(ac + 3 * H + k, cnt) * (one - yy * yy))
          .store(dzr + k, cnt);
    });
    // through chat: dc' = LN backward of dz (written to dc_prev's row, used as scratch) + dc
    if (LN) layer_norm_backward_row<scalar_t>(H, dzr, w.gamma_c, s.chat + b * H, s.rstd_c[b], dcp);
    vloop<Vec>(H, [&](int64_t k, int64_t cnt) {
      const Vec dct = Vec::loadu(dcp + k, cnt) + Vec::loadu(dc + b * H + k, cnt);
      const Vec i = Vec::loadu(ac + k, cnt), f = Vec::loadu(ac + H + k, cnt);
      const Vec g = Vec::loadu(s.gt + b * H + k, cnt), o = Vec::loadu(ac + 3 * H + k, cnt);
      (dct * g * i * (one - i)).store(dgr + k, cnt);
      (dct * Vec::loadu(s.c_prev + b * H + k, cnt) * f * (one - f)).store(dgr + H + k, cnt);
      (dct * i * (one - g * g)).store(dgr + 2 * H + k, cnt);
      (Vec::loadu(dhr + k, cnt) * Vec::loadu(yr + k, cnt) * o * (one - o)).store(dgr + 3 * H + k, cnt);
      (dct * f).store(dcp + k, cnt);  // the same element was read above: in place is safe
    });
    // through ahat: da = LN backward of the gate gradients (plain: da = dg)
    if (LN)
      layer_norm_backward_row<scalar_t>(G, dgr, w.gamma_hh, s.ahat + b * G, s.rstd_a[b],
                                        d.da + b * G);
    if (in.gamma_ih) {  // through the input LN: dx = LN backward of the same gate gradients
      const Vec mx(in.mean[b]), rx(in.rstd[b]);
      scalar_t* xh = in.xhat + b * G;
      vloop<Vec>(G, [&](int64_t k, int64_t cnt) {
        ((Vec::loadu(s.gi + b * G + k, cnt) - mx) * rx).store(xh + k, cnt);
      });
      layer_norm_backward_row<scalar_t>(G, dgr, in.gamma_ih, xh, in.rstd[b], in.dx + b * G);
    }
  }
}

// One step over all B rows (rows split over threads).
template <typename scalar_t>
void forward_step(bool ln, bool save, int64_t B, int64_t H, double eps, const scalar_t* a,
                  const Gains<scalar_t>& w, const StepBlocks<scalar_t>& s, scalar_t* c_new,
                  scalar_t* h_new, const InputLN<scalar_t>& in) {
  at::parallel_for(0, B, row_grain(4 * H), [&](int64_t b0, int64_t b1) {
    with_flag(ln, [&](auto LN) {
      with_flag(save, [&](auto SAVE) {
        forward_rows<scalar_t, decltype(LN)::value, decltype(SAVE)::value>(b0, b1, H, eps, a, w,
                                                                           s, c_new, h_new, in);
      });
    });
  });
}

// One backward step over all B rows, then its share of the gain and shift gradients (the rows
// are done and still in cache).
template <typename scalar_t>
void backward_step(bool ln, int64_t B, int64_t H, const Gains<scalar_t>& w,
                   const StepBlocks<scalar_t>& s, const scalar_t* dh, const scalar_t* dc,
                   const StepGrads<scalar_t>& d, const InputLN<scalar_t>& in) {
  at::parallel_for(0, B, row_grain(4 * H), [&](int64_t b0, int64_t b1) {
    with_flag(ln, [&](auto LN) {
      backward_rows<scalar_t, decltype(LN)::value>(b0, b1, H, w, s, dh, dc, d, in);
    });
  });
  if (!ln) return;  // the plain LSTM has no gains or shifts
  add_column_sums<scalar_t>(B, 4 * H, d.dg, s.ahat, d.d_gamma_hh);
  add_column_sums<scalar_t>(B, H, d.dz, s.chat, d.d_gamma_c);
  add_column_sums<scalar_t>(B, H, d.dz, nullptr, d.d_beta_c);
  if (in.gamma_ih) {  // d gamma_ih = sum dg xhat, d shift = sum dg
    add_column_sums<scalar_t>(B, 4 * H, d.dg, in.xhat, in.d_gamma_ih);
    add_column_sums<scalar_t>(B, 4 * H, d.dg, nullptr, in.d_shift);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The arguments of the two loops, grouped; built once per call by the bridge (lstm.py). Every
// tensor is a contiguous CPU tensor of the call's dtype.
// ---------------------------------------------------------------------------------------------

// The cell: layer norm on or off, its epsilon, the gains and shift (empty for the plain LSTM), and
// with the input side's layer norm inside the loop its gain and shift (none otherwise).
struct LSTMCell {
  bool layer_norm;
  double eps;
  at::Tensor gamma_hh, gamma_c, beta_c;
  std::optional<at::Tensor> gamma_ih, shift;
};

// The masks, all optional: hidden_mask (B, H) on h entering W_hh; keep_h, keep_c (T, B, 1 or H)
// the update fractions s_t = s_{t-1} + k_t (s'_t - s_{t-1}) (zoneout, lengths).
struct LSTMMasks {
  std::optional<at::Tensor> hidden_mask, keep_h, keep_c;
};

// The states between steps, S_h, S_c (T + 1, B, H): step t reads j = t and writes j = t + 1
// going forward; in reverse it reads j = t + 1 and writes j = t. With masks to blend, each step
// writes its new states into new_h, new_c (T, B, H) and the blended state goes to S.
struct LSTMStates {
  at::Tensor S_h, S_c;
  std::optional<at::Tensor> new_h, new_c;
};

// What forward keeps for backward: R = T rows, or R = 1 when nothing is kept (every step reuses
// row 0). act (R, B, 4H); gt, y (R, B, H); with layer norm ahat (R, B, 4H), chat (R, B, H),
// rstd (2, R, B) (of a, of c'); the plain LSTM passes ahat (1, B, 4H) as the product's scratch
// and chat, rstd empty. With the input layer norm, stat_x (2, R, B): mean and rstd of W_ih x.
struct LSTMSaved {
  at::Tensor act, gt, y, ahat, chat, rstd;
  std::optional<at::Tensor> stat_x;
};

// Backward's outputs: dg (T or 1, B, 4H) the gates' gradient; da (T, B, 4H) the gradient of
// a (the plain LSTM passes dg again); dz (B, H) scratch; the gains' gradients (added to). With the
// input layer norm: dx (T, B, 4H) the gradient of W_ih x, xhat (B, 4H) scratch, and the input
// gain's and shift's gradients.
struct LSTMGrads {
  at::Tensor dg, da, dz, d_gamma_hh, d_gamma_c, d_beta_c;
  std::optional<at::Tensor> dx, xhat, d_gamma_ih, d_shift;
};

namespace {

template <typename scalar_t>
Gains<scalar_t> gains(const LSTMCell& cell) {
  return {ptr<scalar_t>(cell.gamma_hh), ptr<scalar_t>(cell.gamma_c), ptr<scalar_t>(cell.beta_c)};
}

// The (B, .) blocks of step t: row r of the per-step buffers (r = t, or 0 when R = 1).
template <typename scalar_t>
StepBlocks<scalar_t> blocks(const LSTMSaved& saved, const at::Tensor& gi, const scalar_t* c_prev,
                            int64_t t, int64_t r) {
  const int64_t R = saved.act.size(0), B = saved.act.size(1), G = saved.act.size(2), H = G / 4;
  const bool ln_bufs = saved.chat.numel() > 0;
  return {ptr<scalar_t>(gi, t * B * G), c_prev,
          ptr<scalar_t>(saved.act, r * B * G), ptr<scalar_t>(saved.gt, r * B * H),
          ptr<scalar_t>(saved.y, r * B * H),
          ptr<scalar_t>(saved.ahat, saved.ahat.size(0) == 1 ? 0 : r * B * G),
          ln_bufs ? ptr<scalar_t>(saved.rstd, r * B) : nullptr,
          ptr<scalar_t>(saved.chat, r * B * H),
          ln_bufs ? ptr<scalar_t>(saved.rstd, (R + r) * B) : nullptr};
}

void check_args(const LSTMCell& cell, const LSTMSaved& saved, const at::Tensor& gi) {
  const auto dtype = gi.scalar_type();
  for (const at::Tensor* p : {&gi, &cell.gamma_hh, &cell.gamma_c, &cell.beta_c, &saved.act,
                              &saved.gt, &saved.y, &saved.ahat, &saved.chat, &saved.rstd})
    check(*p, "every tensor", dtype);
  const int64_t R = saved.act.size(0);
  TORCH_CHECK(gi.dim() == 3 && saved.act.dim() == 3 && gi.size(2) == saved.act.size(2),
              "gi and act must be (T, B, 4H) and (R, B, 4H)");
  TORCH_CHECK(R == gi.size(0) || R == 1, "the saved buffers must have T or 1 rows");
  if (cell.gamma_ih) {
    TORCH_CHECK(cell.shift && saved.stat_x, "gamma_ih, shift and stat_x go together");
    for (const at::Tensor* p : {&*cell.gamma_ih, &*cell.shift, &*saved.stat_x})
      check(*p, "the input layer norm's tensors", dtype);
    TORCH_CHECK(saved.stat_x->dim() == 3 && saved.stat_x->size(0) == 2 &&
                saved.stat_x->size(1) == R, "stat_x must be (2, R, B)");
  }
}

}  // namespace

// The forward over all T steps: the same products, masks and blends as the Python driver
// (rnnkit/nn/fast/driver.py), in the same order, without a Python round trip per step.
// save false (inference: no backward to come): the saved buffers have one row (R = 1), used as
// each step's scratch, and what only the backward reads is not written at all.
void lstm_forward_loop(const LSTMCell& cell, const Linear& product, const LSTMMasks& masks,
                       const LSTMStates& states, const LSTMSaved& saved, const at::Tensor& gi,
                       bool reverse, bool save) {
  check_args(cell, saved, gi);
  const int64_t T = gi.size(0), B = gi.size(1), G = gi.size(2), H = G / 4, R = saved.act.size(0);
  TORCH_CHECK(save ? R == T : R == 1, "the saved buffers must have T rows (save) or 1 (not)");
  TORCH_CHECK(states.S_h.size(0) == T + 1 && states.S_c.size(0) == T + 1,
              "S_h, S_c must be (T + 1, B, H)");
  const bool blend = states.new_h.has_value();
  TORCH_CHECK(blend == states.new_c.has_value(), "new_h and new_c go together");
  check(states.S_h, "S_h", gi.scalar_type());
  check(states.S_c, "S_c", gi.scalar_type());
  if (blend) {
    check(*states.new_h, "new_h", gi.scalar_type());
    check(*states.new_c, "new_c", gi.scalar_type());
  }
  at::Tensor h_in = masks.hidden_mask ? at::empty({B, H}, gi.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(gi.scalar_type(), "lstm_forward_loop", [&] {
    const Gains<scalar_t> w = gains<scalar_t>(cell);
    for (int64_t n = 0; n < T; ++n) {
      const int64_t t = reverse ? T - 1 - n : n, r = R == T ? t : 0;
      const int64_t jp = reverse ? t + 1 : t, jn = reverse ? t : t + 1;
      at::Tensor h_prev = states.S_h.select(0, jp);
      const at::Tensor& x = masks.hidden_mask ? at::mul_out(h_in, h_prev, *masks.hidden_mask)
                                              : h_prev;
      const StepBlocks<scalar_t> s =
          blocks<scalar_t>(saved, gi, ptr<scalar_t>(states.S_c, jp * B * H), t, r);
      // a = h_in W_hh^T; unpacked, into ahat's row (the plain LSTM's scratch), which the row
      // loop then overwrites with ahat: it reads each element of a before it writes it
      at::Tensor ahat_r = saved.ahat.select(0, saved.ahat.size(0) == 1 ? 0 : r);
      at::Tensor a = linear(product, x, ahat_r);
      InputLN<scalar_t> in;
      if (cell.gamma_ih) {
        in.gamma_ih = ptr<scalar_t>(cell.gamma_ih);
        in.shift = ptr<scalar_t>(cell.shift);
        in.mean = ptr<scalar_t>(saved.stat_x, r * B);
        in.rstd = ptr<scalar_t>(saved.stat_x, (R + r) * B);
      }
      forward_step<scalar_t>(
          cell.layer_norm, save, B, H, cell.eps, ptr<scalar_t>(a), w, s,
          blend ? ptr<scalar_t>(states.new_c, t * B * H) : ptr<scalar_t>(states.S_c, jn * B * H),
          blend ? ptr<scalar_t>(states.new_h, t * B * H) : ptr<scalar_t>(states.S_h, jn * B * H),
          in);
      if (!blend) continue;
      // zoneout / lengths: s_t = s_{t-1} + k_t (s'_t - s_{t-1}), the driver's torch.lerp
      for (int k = 0; k < 2; ++k) {
        const at::Tensor& S = k == 0 ? states.S_h : states.S_c;
        const at::Tensor fresh = (k == 0 ? *states.new_h : *states.new_c).select(0, t);
        const std::optional<at::Tensor>& keep = k == 0 ? masks.keep_h : masks.keep_c;
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
// (T, B, H): the cell state each step read; `product`: da -> da W_hh. Writes grads.dg, grads.da
// (and grads.dx) and adds to the gains' gradients; returns the gradients on (h0, c0).
std::vector<at::Tensor> lstm_backward_loop(const LSTMCell& cell, const Linear& product,
                                           const LSTMMasks& masks, const LSTMSaved& saved,
                                           const LSTMGrads& grads, const at::Tensor& gi,
                                           const at::Tensor& c_prev, const at::Tensor& dy,
                                           const at::Tensor& dh_last, const at::Tensor& dc_last,
                                           bool reverse) {
  check_args(cell, saved, gi);
  const int64_t T = saved.act.size(0), B = saved.act.size(1), G = saved.act.size(2), H = G / 4;
  TORCH_CHECK(T == gi.size(0), "backward needs the buffers of every step (R = T)");
  TORCH_CHECK(dy.dim() == 3 && dy.size(0) == T, "dy must be (T, B, H)");
  for (const at::Tensor* p : {&c_prev, &grads.dg, &grads.da, &grads.dz, &grads.d_gamma_hh,
                              &grads.d_gamma_c, &grads.d_beta_c})
    check(*p, "every tensor", gi.scalar_type());
  TORCH_CHECK(grads.dg.dim() == 3 && (grads.dg.size(0) == T || grads.dg.size(0) == 1),
              "dg must be (T or 1, B, 4H)");
  const int64_t dg_rows = grads.dg.size(0);
  if (cell.gamma_ih) {
    TORCH_CHECK(grads.dx && grads.xhat && grads.d_gamma_ih && grads.d_shift,
                "the input layer norm's gradients go together");
    for (const at::Tensor* p : {&*grads.dx, &*grads.xhat, &*grads.d_gamma_ih, &*grads.d_shift})
      check(*p, "the input layer norm's gradients", gi.scalar_type());
  }
  // ping-pong buffers: the gradients on the state after the step being undone, and before it
  const int64_t t0 = reverse ? 0 : T - 1;
  at::Tensor dh = at::add(dh_last, dy.select(0, t0)).contiguous();
  at::Tensor dc = dc_last.contiguous().clone();
  at::Tensor dh_prev = at::empty_like(dh), dc_prev = at::empty_like(dc);
  AT_DISPATCH_FLOATING_TYPES(gi.scalar_type(), "lstm_backward_loop", [&] {
    const Gains<scalar_t> w = gains<scalar_t>(cell);
    for (int64_t n = 0; n < T; ++n) {
      const int64_t t = reverse ? n : T - 1 - n;
      // zoneout / lengths: the gradient on s_t splits into k_t d (to the new state s'_t) and
      // d - k_t d (held over to s_{t-1}), as in the driver
      at::Tensor dh_new = masks.keep_h ? at::mul(dh, masks.keep_h->select(0, t)) : dh;
      at::Tensor dc_new = masks.keep_c ? at::mul(dc, masks.keep_c->select(0, t)) : dc;
      at::Tensor hold_h = masks.keep_h ? at::sub(dh, dh_new) : at::Tensor();
      at::Tensor hold_c = masks.keep_c ? at::sub(dc, dc_new) : at::Tensor();
      InputLN<scalar_t> in;
      if (cell.gamma_ih) {
        in.gamma_ih = ptr<scalar_t>(cell.gamma_ih);
        in.mean = ptr<scalar_t>(saved.stat_x, t * B);
        in.rstd = ptr<scalar_t>(saved.stat_x, (T + t) * B);
        in.xhat = ptr<scalar_t>(grads.xhat);
        in.dx = ptr<scalar_t>(grads.dx, t * B * G);
        in.d_gamma_ih = ptr<scalar_t>(grads.d_gamma_ih);
        in.d_shift = ptr<scalar_t>(grads.d_shift);
      }
      const StepGrads<scalar_t> d{ptr<scalar_t>(grads.dg, (dg_rows == T ? t : 0) * B * G),
                                  ptr<scalar_t>(grads.da, t * B * G), ptr<scalar_t>(grads.dz),
                                  ptr<scalar_t>(dc_prev), ptr<scalar_t>(grads.d_gamma_hh),
                                  ptr<scalar_t>(grads.d_gamma_c), ptr<scalar_t>(grads.d_beta_c)};
      backward_step<scalar_t>(cell.layer_norm, B, H, w,
                              blocks<scalar_t>(saved, gi, ptr<scalar_t>(c_prev, t * B * H), t, t),
                              ptr<scalar_t>(dh_new), ptr<scalar_t>(dc_new), d, in);
      // the h gradient before step t: through W_hh, plus the previous step's output gradient
      const at::Tensor dy_prev = n + 1 < T ? dy.select(0, reverse ? t + 1 : t - 1) : at::Tensor();
      at::Tensor dh_next =
          grad_through_w_hh(product, masks.hidden_mask, grads.da.select(0, t), dy_prev, dh_prev);
      if (masks.keep_h) dh_next.add_(hold_h);
      if (masks.keep_c) dc_prev.add_(hold_c);
      dh_prev = dh;  // free for the next step (unpacked products write into it)
      dh = dh_next;
      std::swap(dc, dc_prev);
    }
  });
  return {dh, dc};
}

}  // namespace rnnkit::cpu

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace rnnkit::cpu;
  using Opt = std::optional<at::Tensor>;
  // the product's type, Linear (linear.h), is bound once for every cell: module.cpp
  py::class_<LSTMCell>(m, "Cell")
      .def(py::init<bool, double, at::Tensor, at::Tensor, at::Tensor, Opt, Opt>(),
           py::arg("layer_norm"), py::arg("eps"), py::arg("gamma_hh"), py::arg("gamma_c"),
           py::arg("beta_c"), py::arg("gamma_ih") = py::none(), py::arg("shift") = py::none());
  py::class_<LSTMMasks>(m, "Masks")
      .def(py::init<Opt, Opt, Opt>(), py::arg("hidden_mask") = py::none(),
           py::arg("keep_h") = py::none(), py::arg("keep_c") = py::none());
  py::class_<LSTMStates>(m, "States")
      .def(py::init<at::Tensor, at::Tensor, Opt, Opt>(), py::arg("S_h"), py::arg("S_c"),
           py::arg("new_h") = py::none(), py::arg("new_c") = py::none());
  py::class_<LSTMSaved>(m, "Saved")
      .def(py::init<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, Opt>(),
           py::arg("act"), py::arg("gt"), py::arg("y"), py::arg("ahat"), py::arg("chat"),
           py::arg("rstd"), py::arg("stat_x") = py::none());
  py::class_<LSTMGrads>(m, "Grads")
      .def(py::init<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, Opt,
                    Opt, Opt, Opt>(),
           py::arg("dg"), py::arg("da"), py::arg("dz"), py::arg("d_gamma_hh"),
           py::arg("d_gamma_c"), py::arg("d_beta_c"), py::arg("dx") = py::none(),
           py::arg("xhat") = py::none(), py::arg("d_gamma_ih") = py::none(),
           py::arg("d_shift") = py::none());
  // Nothing in the loops touches Python objects once the arguments are converted, so the GIL is
  // let go for the call, as ATen's own ops do: layers in several Python threads run at once.
  using release = py::call_guard<py::gil_scoped_release>;
  m.def("lstm_forward_loop", &lstm_forward_loop, "(LN-)LSTM forward over all steps (in place)",
        py::arg("cell"), py::arg("product"), py::arg("masks"), py::arg("states"),
        py::arg("saved"), py::arg("gi"), py::arg("reverse"), py::arg("save"), release());
  m.def("lstm_backward_loop", &lstm_backward_loop,
        "(LN-)LSTM backward over all steps; returns the gradients on (h0, c0)", py::arg("cell"),
        py::arg("product"), py::arg("masks"), py::arg("saved"), py::arg("grads"), py::arg("gi"),
        py::arg("c_prev"), py::arg("dy"), py::arg("dh_last"), py::arg("dc_last"),
        py::arg("reverse"), release());
}
