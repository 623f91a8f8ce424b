// The multi-step LIF neuron of train/neuron.py (`_LIFMultiStep`) as one pass over memory per
// direction, for float32 CPU tensors; loaded and explained by train/lif_cpu.py.
//
// Each task owns a block of neurons and runs all T steps on it, the membrane (forward) or
// dL/du (backward) in a small array that stays in L1, so each element of x, h, s and the
// gradients crosses memory once. The float operations are the torch engine's, in its order, each
// rounded to float32. This file must be compiled with -ffp-contract=off so that no multiply and
// add are merged where torch rounds twice; `std::fma` stands exactly where torch's addcmul kernel
// rounds once (FUSED_ADDCMUL, which lif_cpu.py sets from a probe of torch.addcmul itself).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace {

constexpr int64_t BLOCK = 512;  // neurons per task

inline float addcmul(float self, float a, float b) {  // torch.addcmul(self, a, b), value 1
#if FUSED_ADDCMUL
  return std::fma(a, b, self);
#else
  return self + a * b;
#endif
}

// One block of `len` neurons starting at `lo`, all T steps. Plain functions with restrict
// pointers (the arrays never overlap): inside parallel_for's lambda the compiler cannot see that and
// does not vectorize the inner loop.
void forward_block(const float* __restrict__ x, float* __restrict__ h, float* __restrict__ s, float* __restrict__ u,
                   int64_t T, int64_t n, int64_t lo, int64_t len, float beta, float thr) {
  alignas(64) float mem[BLOCK] = {};
  for (int64_t t = 0; t < T; ++t) {
    const int64_t o = t * n + lo;
    for (int64_t i = 0; i < len; ++i) {
      const float hi = mem[i] * beta + x[o + i];  // two roundings: torch.mul(u, beta).add_(x)
      const float si = hi > thr ? 1.0f : 0.0f;     // torch.gt(h, threshold)
      const float ui = hi - hi * si;               // addcmul(h, h, s, value=-1): h * s is exact
      h[o + i] = hi;
      s[o + i] = si;
      u[o + i] = ui;
      mem[i] = ui;
    }
  }
}

// h, s: the forward's pre-reset membranes and spikes; gs, gm: dL/ds and dL/du, or null where no
// gradient reached them; gx: dL/dx, written. The steps run backwards.
template <bool HAS_GS, bool HAS_GM>
void backward_block(const float* __restrict__ h, const float* __restrict__ s, const float* __restrict__ gs,
                    const float* __restrict__ gm, float* __restrict__ gx, int64_t T, int64_t n, int64_t lo, int64_t len,
                    float beta, float thr) {
  alignas(64) float gu[BLOCK] = {};
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t o = t * n + lo;
    for (int64_t i = 0; i < len; ++i) {
      const float hi = h[o + i], si = s[o + i];
      const float g_u = HAS_GM ? gu[i] + gm[o + i] : gu[i];
      // triangle_surrogate(h - threshold), width 1: clamp(-|h - threshold| + 1, min=0)
      const float sg = std::max(-std::fabs(hi - thr) + 1.0f, 0.0f);
      const float through = HAS_GS ? -(g_u * hi) + gs[o + i] : -(g_u * hi);
      float g = addcmul(g_u, through, sg);
      g = g - g_u * si;  // addcmul(g, grad_u, s, value=-1): the product is exact
      gx[o + i] = g;
      gu[i] = g * beta;
    }
  }
}

int64_t slice_size(const at::Tensor& x) { return x.size(0) ? x.numel() / x.size(0) : 0; }

// x, h, s, u: T consecutive slices of n floats each (lif_cpu.py checks the layout).
void lif_forward(const at::Tensor& x, at::Tensor& h, at::Tensor& s, at::Tensor& u, double beta, double threshold) {
  const int64_t T = x.size(0), n = slice_size(x);
  const float* xp = x.const_data_ptr<float>();
  float *hp = h.mutable_data_ptr<float>(), *sp = s.mutable_data_ptr<float>(), *up = u.mutable_data_ptr<float>();
  // torch casts a Python float to the tensor's float32 before it multiplies or compares
  const float b = static_cast<float>(beta), thr = static_cast<float>(threshold);
  at::parallel_for(0, (n + BLOCK - 1) / BLOCK, 1, [=](int64_t b0, int64_t b1) {
    for (int64_t k = b0; k < b1; ++k)
      forward_block(xp, hp, sp, up, T, n, k * BLOCK, std::min(BLOCK, n - k * BLOCK), b, thr);
  });
}

void lif_backward(const at::Tensor& h, const at::Tensor& s, const std::optional<at::Tensor>& gs,
                  const std::optional<at::Tensor>& gm, at::Tensor& gx, double beta, double threshold) {
  const int64_t T = h.size(0), n = slice_size(h);
  const float *hp = h.const_data_ptr<float>(), *sp = s.const_data_ptr<float>();
  const float* gsp = gs.has_value() && gs->defined() ? gs->const_data_ptr<float>() : nullptr;
  const float* gmp = gm.has_value() && gm->defined() ? gm->const_data_ptr<float>() : nullptr;
  float* gxp = gx.mutable_data_ptr<float>();
  const float b = static_cast<float>(beta), thr = static_cast<float>(threshold);
  auto block = gsp ? (gmp ? backward_block<true, true> : backward_block<true, false>)
                   : (gmp ? backward_block<false, true> : backward_block<false, false>);
  at::parallel_for(0, (n + BLOCK - 1) / BLOCK, 1, [=](int64_t b0, int64_t b1) {
    for (int64_t k = b0; k < b1; ++k)
      block(hp, sp, gsp, gmp, gxp, T, n, k * BLOCK, std::min(BLOCK, n - k * BLOCK), b, thr);
  });
}

}  // namespace

TORCH_LIBRARY(spikeport_lif_cpu, m) {
  m.def("forward(Tensor x, Tensor(a!) h, Tensor(b!) s, Tensor(c!) u, float beta, float threshold) -> ()");
  m.def("backward(Tensor h, Tensor s, Tensor? gs, Tensor? gm, Tensor(a!) gx, float beta, float threshold) -> ()");
}

TORCH_LIBRARY_IMPL(spikeport_lif_cpu, CPU, m) {
  m.impl("forward", &lif_forward);
  m.impl("backward", &lif_backward);
}
