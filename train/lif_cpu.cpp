// The multi-step LIF neuron of train/neuron.py (`_LIFMultiStep`) as one pass over memory per
// direction, for float32 CPU tensors, with its autograd node in C++; loaded and explained by
// train/lif_cpu.py.
//
// Each task owns a block of neurons and runs all T steps on it, the membrane (forward) or
// dL/du (backward) in a small array that stays in L1, so each element of x and the spikes (forward)
// and of x and the gradients (backward) crosses memory once. The float operations are the torch engine's, in its order, each
// rounded to float32. This file must be compiled with -ffp-contract=off so that no multiply and
// add are merged where torch rounds twice; `std::fma` stands exactly where torch's addcmul kernel
// rounds once (FUSED_ADDCMUL, which lif_cpu.py sets from a probe of torch.addcmul itself); and with
// -fno-trapping-math, without which its loops stay scalar (below).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t BLOCK = 512;  // neurons per task

inline float addcmul(float self, float a, float b) {  // torch.addcmul(self, a, b), value 1
#if FUSED_ADDCMUL
  return std::fma(a, b, self);
#else
  return self + a * b;
#endif
}

// The float operations of one step, shared by both passes so that the backward's h is the
// forward's, bit for bit:
inline float pre_reset(float u, float x, float beta) { return u * beta + x; }  // two roundings: torch.mul(u, beta).add_(x)
inline float spike(float h, float thr) { return h > thr ? 1.0f : 0.0f; }        // torch.gt(h, threshold)
inline float reset(float h, float s) { return h - h * s; }                      // addcmul(h, h, s, value=-1): h * s is exact

// One step of one block of `len` neurons, each loop in a function of its own with restrict pointers
// (the arrays never overlap), which the compiler vectorizes: inlined into the loops over blocks
// and steps, gcc 12 turns the spike's two values into branches through the loop and leaves it
// scalar, and then the kernel's speed depends on how well the CPU predicts which neurons fire (on
// an AMD EPYC Zen 3, 4.8 ns per neuron and step on random input, 0.8-1.0 ns where all or none fire;
// docs/train.md, ninth round). It also needs -fno-trapping-math (lif_cpu.py): gcc does not compute
// both sides of a float comparison that might trap. Neither changes a value: each operation is the
// same IEEE operation, rounded to float32.

// The forward writes the spikes only: x is what the backward keeps, and neither h nor the membranes
// leave the block, so a step crosses memory twice (x in, spikes out) instead of four times. On the
// 64/128/256 CNN the pass runs at the speed of a copy (memory-bound), so that halves its time.
[[gnu::noinline]] void forward_step(const float* __restrict__ x, float* __restrict__ s, float* __restrict__ mem, int64_t len,
                                    float beta, float thr) {
  for (int64_t i = 0; i < len; ++i) {
    const float hi = pre_reset(mem[i], x[i], beta), si = spike(hi, thr);
    s[i] = si;
    mem[i] = reset(hi, si);
  }
}

// The backward computes the forward's pre-reset membranes h of its block again, from x.
[[gnu::noinline]] void recompute_step(const float* __restrict__ x, float* __restrict__ h, float* __restrict__ mem, int64_t len,
                                      float beta, float thr) {
  for (int64_t i = 0; i < len; ++i) {
    const float hi = pre_reset(mem[i], x[i], beta);
    h[i] = hi;
    mem[i] = reset(hi, spike(hi, thr));
  }
}

// gs: dL/ds of the step; gx: dL/dx, written; gu: dL/du[t], from h[t+1] = beta u[t] + x[t+1].
[[gnu::noinline]] void backward_step(const float* __restrict__ h, const float* __restrict__ gs, float* __restrict__ gx,
                                     float* __restrict__ gu, int64_t len, float beta, float thr) {
  for (int64_t i = 0; i < len; ++i) {
    const float hi = h[i], si = spike(hi, thr), g_u = gu[i];
    // triangle_surrogate(h - threshold), width 1: clamp(-|h - threshold| + 1, min=0)
    const float sg = std::max(-std::fabs(hi - thr) + 1.0f, 0.0f);
    float g = addcmul(g_u, -(g_u * hi) + gs[i], sg);
    g = g - g_u * si;  // addcmul(g, grad_u, s, value=-1): the product is exact
    gx[i] = g;
    gu[i] = g * beta;
  }
}

// One block of `len` neurons starting at `lo`, all T steps, its membrane in L1.
void forward_block(const float* x, float* s, int64_t T, int64_t n, int64_t lo, int64_t len, float beta, float thr) {
  alignas(64) float mem[BLOCK] = {};
  for (int64_t t = 0; t < T; ++t) forward_step(x + t * n + lo, s + t * n + lo, mem, len, beta, thr);
}

// h: scratch of T * BLOCK floats for the block's pre-reset membranes (T steps of 2 KiB: L1 or L2),
// computed forwards, then the steps run backwards.
void backward_block(const float* x, const float* gs, float* gx, float* h, int64_t T, int64_t n, int64_t lo, int64_t len,
                    float beta, float thr) {
  alignas(64) float mem[BLOCK] = {};
  for (int64_t t = 0; t < T; ++t) recompute_step(x + t * n + lo, h + t * BLOCK, mem, len, beta, thr);
  alignas(64) float gu[BLOCK] = {};
  for (int64_t t = T - 1; t >= 0; --t) backward_step(h + t * BLOCK, gs + t * n + lo, gx + t * n + lo, gu, len, beta, thr);
}

int64_t slice_size(const at::Tensor& x) { return x.size(0) ? x.numel() / x.size(0) : 0; }

// x, s: T consecutive slices of n floats each (`slices_in_memory`).
void lif_forward(const at::Tensor& x, at::Tensor& s, double beta, double threshold) {
  const int64_t T = x.size(0), n = slice_size(x);
  const float* xp = x.const_data_ptr<float>();
  float* sp = s.mutable_data_ptr<float>();
  // torch casts a Python float to the tensor's float32 before it multiplies or compares
  const float b = static_cast<float>(beta), thr = static_cast<float>(threshold);
  at::parallel_for(0, (n + BLOCK - 1) / BLOCK, 1, [=](int64_t b0, int64_t b1) {
    for (int64_t k = b0; k < b1; ++k) forward_block(xp, sp, T, n, k * BLOCK, std::min(BLOCK, n - k * BLOCK), b, thr);
  });
}

void lif_backward(const at::Tensor& x, const at::Tensor& gs, at::Tensor& gx, double beta, double threshold) {
  const int64_t T = x.size(0), n = slice_size(x);
  const float *xp = x.const_data_ptr<float>(), *gsp = gs.const_data_ptr<float>();
  float* gxp = gx.mutable_data_ptr<float>();
  const float b = static_cast<float>(beta), thr = static_cast<float>(threshold);
  at::parallel_for(0, (n + BLOCK - 1) / BLOCK, 1, [=](int64_t b0, int64_t b1) {
    std::vector<float> h(T * BLOCK);  // one scratch per task, reused by its blocks
    for (int64_t k = b0; k < b1; ++k)
      backward_block(xp, gsp, gxp, h.data(), T, n, k * BLOCK, std::min(BLOCK, n - k * BLOCK), b, thr);
  });
}

// neuron._slices_in_memory: x [T, ...] is T consecutive dense slices (time outermost, no gaps or
// overlaps inside a slice), whatever the order of the axes inside a slice.
bool slices_in_memory(const at::Tensor& x) {
  if (x.dim() == 0 || x.numel() == 0) return false;
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size) of the axes after time
  for (int64_t d = 1; d < x.dim(); ++d)
    if (x.size(d) > 1) dims.emplace_back(x.stride(d), x.size(d));
  std::sort(dims.begin(), dims.end());
  int64_t span = 1;
  for (const auto& [stride, size] : dims) {
    if (stride != span) return false;
    span *= size;
  }
  return x.size(0) == 1 || x.stride(0) == span;
}

// neuron._like: a gradient in the layout of the forward's tensors (autograd may hand another).
at::Tensor like(const at::Tensor& reference, const at::Tensor& grad) {
  if (!grad.defined() || grad.strides() == reference.strides()) return grad;
  return at::empty_like(reference).copy_(grad);
}

// The autograd node in C++: a Python torch.autograd.Function costs tens of microseconds per call and
// direction, which on the digits CNN's small layers is as much as the kernels themselves.
struct LIFMultiStep : public torch::autograd::Function<LIFMultiStep> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, double beta, double threshold) {
    TORCH_CHECK(input.device().is_cpu() && input.scalar_type() == at::kFloat, "spikeport_lif_cpu::lif takes float32 CPU tensors");
    const at::Tensor x = slices_in_memory(input) ? input : input.contiguous();
    at::Tensor s = at::empty_like(x);
    if (x.numel()) lif_forward(x, s, beta, threshold);
    ctx->save_for_backward({x});
    ctx->saved_data["beta"] = beta;
    ctx->saved_data["threshold"] = threshold;
    return s;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    at::Tensor gx = at::empty_like(x);
    if (x.numel())
      lif_backward(x, like(x, grads[0]), gx, ctx->saved_data["beta"].toDouble(), ctx->saved_data["threshold"].toDouble());
    return {gx, at::Tensor(), at::Tensor()};
  }
};

at::Tensor lif(const at::Tensor& x, double beta, double threshold) { return LIFMultiStep::apply(x, beta, threshold); }

}  // namespace

TORCH_LIBRARY(spikeport_lif_cpu, m) {
  m.def("lif(Tensor x, float beta, float threshold) -> Tensor");
}

// One kernel for every dispatch key of a CPU tensor, autograd included: the Function records the
// node itself when x requires a gradient.
TORCH_LIBRARY_IMPL(spikeport_lif_cpu, CompositeImplicitAutograd, m) { m.impl("lif", &lif); }
