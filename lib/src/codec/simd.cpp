// SIMD decoder front: CPU detection (xsimd), the active kernel table, and the plan each kernel
// call gets (simd.h). Built with the baseline flags, like the scalar reference it leans on for
// odd tails.
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include "simd.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "mqkv/detail/lowbit.h"
#include "mqkv/simd.h"

namespace mqkv {
namespace codec::simd {
namespace {

namespace lb = mqkv::lowbit;

struct Arch {
  const char* name;
  const Kernels* kernels;
};

// Available tables, best first (kernels == nullptr marks "scalar").
const std::vector<Arch>& Available() {
  static const std::vector<Arch> archs = [] {
    std::vector<Arch> v;
#if defined(__x86_64__) || defined(__i386__)
    const auto cpu = xsimd::available_architectures();
    __builtin_cpu_init();
    // F16C: CPUID leaf 1, ECX bit 29 (read directly: clang 14's __builtin_cpu_supports lacks "f16c").
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx >> 29 & 1u);
    if (cpu.avx512f && cpu.avx512bw && cpu.avx512dq && cpu.avx512cd && __builtin_cpu_supports("avx512vl") && f16c &&
        cpu.fma3_avx2 && KernelsAvx512())
      v.push_back({"avx512", KernelsAvx512()});
    if (cpu.avx2 && cpu.fma3_avx2 && f16c && KernelsAvx2()) v.push_back({"avx2", KernelsAvx2()});
    if (cpu.sse2 && KernelsSse2()) v.push_back({"sse2", KernelsSse2()});
#endif
    v.push_back({"scalar", nullptr});
    return v;
  }();
  return archs;
}

const Arch* Find(std::string_view name) {
  for (const Arch& a : Available())
    if (name == a.name) return &a;
  return nullptr;
}

std::atomic<const Arch*> g_active{nullptr};

const Arch* Active() {
  const Arch* a = g_active.load(std::memory_order_acquire);
  if (a) return a;
  static std::once_flag once;
  std::call_once(once, [] {
    const Arch* pick = &Available().front();
    if (const char* env = std::getenv("MQKV_SIMD"); env && *env && std::string_view(env) != "auto") {
      if (const Arch* f = Find(env)) {
        pick = f;
      } else {
        std::string names;
        for (const Arch& x : Available()) names += std::string(names.empty() ? "" : ", ") + x.name;
        std::fprintf(stderr, "mqkv: MQKV_SIMD=%s is not available on this machine (available: %s); using %s\n", env,
                     names.c_str(), pick->name);
      }
    }
    const Arch* expected = nullptr;
    g_active.compare_exchange_strong(expected, pick);  // a ForceSimdArch that came first wins
  });
  return g_active.load(std::memory_order_acquire);
}

// ---- scalar reference helpers for the kernels' odd tails (baseline flags) --------------------

void F16ToF32(const uint8_t* src, uint64_t n, float* dst) {
  for (uint64_t i = 0; i < n; ++i) dst[i] = lb::load_f16(src + 2 * i);
}

void MetaValues(const Plan& p, int field, uint64_t index0, uint32_t gc0, uint32_t n, float* dst) {
  const uint8_t* part = field == 0 ? p.scales : p.mins;
  for (uint32_t k = 0; k < n; ++k) {
    const uint32_t gc = (gc0 + k) % p.group_cols;
    dst[k] = lb::meta_value(lb::read_code(part, index0 + k, p.meta_bits), p.col_lo[field][gc], p.col_step[field][gc]);
  }
}

void Butterflies(float* v, uint32_t block) { lb::fwht_butterflies(v, block); }

}  // namespace

bool Decode(const BlockView& b, uint32_t r0, uint32_t r1, DType out, void* dst) {
  const Arch* arch = Active();
  if (!arch->kernels) return false;
  const BlockHeader& h = *b.header;
  if (r0 > r1 || r1 > h.n_tokens) return false;
  const bool codebook = h.codec == static_cast<uint8_t>(CodecId::kCodebook);
  if (!codebook && h.codec != static_cast<uint8_t>(CodecId::kAffine)) return false;
  const Kernels& k = *arch->kernels;
  const lb::Geometry g = lb::geometry(h);
  const uint64_t rv = g.row_values;
  const size_t es = DTypeSize(out);
  auto* o = static_cast<uint8_t*>(dst);
  const uint32_t q_end = h.n_tokens - h.n_residual;
  uint32_t r = r0;

  if (r < std::min(r1, h.n_sink)) {  // sink rows
    const uint32_t e = std::min(r1, h.n_sink);
    k.f16_rows(b.payload + h.parts[kPartSinkRows].offset + uint64_t(r) * rv * 2, uint64_t(e - r) * rv, out, o);
    o += uint64_t(e - r) * rv * es;
    r = e;
  }
  if (r < std::min(r1, q_end)) {  // quantized rows
    const uint32_t e = std::min(r1, q_end);
    constexpr uint32_t kPad = 16;
    Plan p;
    p.codes = b.payload + h.parts[kPartCodes].offset;
    p.bits = h.bits;
    p.row_values = g.row_values;
    p.codebook = codebook;
    if (codebook)
      for (uint32_t i = 0; i < (1u << h.bits); ++i) p.levels[i] = lb::load_f32(b.payload + h.parts[kPartCodebook].offset + 4 * i);
    p.meta_bits = h.meta_bits;
    p.group_cols = g.group_cols;
    p.col_span = g.col_span;
    p.row_span = g.row_span;
    p.scales = b.payload + h.parts[kPartScales].offset;
    p.mins = codebook ? nullptr : b.payload + h.parts[kPartMins].offset;
    // One allocation for every per-call array (64-byte aligned floats).
    // Each array padded by 16 floats and rounded to 16 (64 bytes) so every one stays aligned.
    const uint64_t gcp = (g.group_cols + 2 * kPad - 1) & ~uint64_t(kPad - 1), rvp = (rv + 2 * kPad - 1) & ~uint64_t(kPad - 1);
    const int fields = codebook ? 1 : 2;
    const bool rotate = h.rotation == static_cast<uint8_t>(Rotation::kHadamard);
    const uint64_t total = (h.meta_bits != 16 ? 2 * fields * gcp : 0) + 2 * gcp + 2 * rvp + (rotate ? rvp : 0) + kPad;
    std::vector<float> mem(total);
    std::vector<uint32_t> sign;
    float* cursor = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(mem.data()) + 63) & ~uintptr_t(63));
    auto take = [&](uint64_t n) {
      float* q = cursor;
      cursor += n;
      return q;
    };
    if (h.meta_bits != 16) {
      for (int f = 0; f < fields; ++f) {
        float* lo = take(gcp);
        float* step = take(gcp);
        for (uint32_t gc = 0; gc < g.group_cols; ++gc) {
          const uint8_t* range = b.payload + h.parts[kPartRanges].offset + (uint64_t(f) * g.group_cols + gc) * 4;
          lo[gc] = lb::load_f16(range);
          step[gc] = lb::meta_step(lo[gc], lb::load_f16(range + 2), h.meta_bits);
        }
        p.col_lo[f] = lo;
        p.col_step[f] = step;
      }
    }
    p.gS = take(gcp);
    p.gM = take(gcp);
    p.S = take(rvp);
    p.M = take(rvp);
    if (rotate) {
      p.rotate = true;
      p.head_dim = h.head_dim;
      p.rot_block = h.rot_block;
      p.rot_c = lb::hadamard_scale(h.rot_block);
      p.row = take(rvp);
      sign.resize(rvp);
      for (uint32_t i = 0; i < h.head_dim; ++i) sign[i] = lb::hadamard_negative(h.rot_seed, i) ? 0x80000000u : 0u;
      for (uint64_t i = h.head_dim; i < rv; ++i) sign[i] = sign[i % h.head_dim];
      p.sign = sign.data();
    }
    p.f16_to_f32 = &F16ToF32;
    p.meta_values = &MetaValues;
    p.butterflies = &Butterflies;
    k.rows(p, r - h.n_sink, e - h.n_sink, out, o);
    o += uint64_t(e - r) * rv * es;
    r = e;
  }
  if (r < r1)  // residual rows
    k.f16_rows(b.payload + h.parts[kPartResidualRows].offset + uint64_t(r - q_end) * rv * 2, uint64_t(r1 - r) * rv, out, o);
  return true;
}

bool EncodeAffine(const CodecSpec&, const float*, BlockShape, EncodedBlock*, Status*) { return false; }

}  // namespace codec::simd

std::vector<std::string> SimdArchs() {
  std::vector<std::string> v;
  for (const auto& a : codec::simd::Available()) v.emplace_back(a.name);
  return v;
}

std::string ActiveSimdArch() { return codec::simd::Active()->name; }

Status ForceSimdArch(std::string_view name) {
  const codec::simd::Arch* a = name == "auto" ? &codec::simd::Available().front() : codec::simd::Find(name);
  if (!a) {
    std::string names;
    for (const auto& x : codec::simd::Available()) names += std::string(names.empty() ? "" : ", ") + x.name;
    return InvalidArgument("SIMD ISA \"" + std::string(name) + "\" is not available on this machine (available: " + names +
                           ", auto)");
  }
  codec::simd::Active();  // settle the environment choice first, so it cannot override this
  codec::simd::g_active.store(a, std::memory_order_release);
  return Status::OK();
}

}  // namespace mqkv
