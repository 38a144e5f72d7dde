// SIMD decoder front: CPU detection (xsimd), the active kernel table, and the plan each kernel
// call gets (simd.h). Built with the baseline flags, like the scalar reference it leans on for
// odd tails.
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include "simd.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "lowbit.h"
#include "detail/lowbit.h"
#include "mqkv/simd.h"
#include "mqkv/snapshot.h"

namespace mqkv {
namespace codec::simd {
namespace {


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
#elif defined(__aarch64__)
    // Advanced SIMD (with the fp16 conversions) is part of the AArch64 baseline.
    if (KernelsNeon()) v.push_back({"neon", KernelsNeon()});
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

// MQKV_SIMD, read once: the ISA it picks (the best available when unset, "auto" or unavailable)
// and, when it could not be followed, why (SimdEnvWarning; the library never prints).
struct EnvChoice {
  const Arch* pick = nullptr;
  std::string warning;
};
const EnvChoice& Env() {
  static const EnvChoice choice = [] {
    EnvChoice c;
    c.pick = &Available().front();
    if (const char* env = std::getenv("MQKV_SIMD"); env && *env && std::string_view(env) != "auto") {
      if (const Arch* f = Find(env)) {
        c.pick = f;
      } else {
        std::string names;
        for (const Arch& x : Available()) names += std::string(names.empty() ? "" : ", ") + x.name;
        c.warning = std::string("MQKV_SIMD=") + env + " is not available on this machine (available: " + names +
                    "); using " + c.pick->name;
      }
    }
    return c;
  }();
  return choice;
}

const Arch* Active() {
  const Arch* a = g_active.load(std::memory_order_acquire);
  if (a) return a;
  const Arch* expected = nullptr;
  g_active.compare_exchange_strong(expected, Env().pick);  // a ForceSimdArch that came first wins
  return g_active.load(std::memory_order_acquire);
}

// ---- scalar reference helpers for the kernels' odd tails (baseline flags) --------------------

void F16ToF32(const uint8_t* src, uint64_t n, float* dst) {
  for (uint64_t i = 0; i < n; ++i) dst[i] = elem::load_f16(src + 2 * i);
}

void MetaValues(const DecodePlan& p, int field, uint64_t index0, uint32_t gc0, uint32_t n, float* dst) {
  const uint8_t* part = field == 0 ? p.scales : p.mins;
  // Called per group row when a row has fewer groups than a vector has lanes (SmolLM2: 3), so its
  // cost is per row: the column wraps by a compare instead of a division per value.
  uint32_t gc = gc0 % p.group_cols;
  for (uint32_t k = 0; k < n; ++k) {
    dst[k] = elem::meta_value(elem::read_code(part, index0 + k, p.meta_bits), p.col_lo[field][gc], p.col_step[field][gc]);
    if (++gc == p.group_cols) gc = 0;
  }
}

void Butterflies(float* v, uint32_t block) { elem::fwht_butterflies(v, block); }

}  // namespace

bool HasKernels() { return Active()->kernels != nullptr; }

bool Decode(const BlockView& b, uint32_t r0, uint32_t r1, DType out, void* dst) {
  const Arch* arch = Active();
  if (!arch->kernels) return false;
  const BlockHeader& h = *b.header;
  if (r0 > r1 || r1 > h.n_tokens) return false;
  const bool codebook = h.codec == static_cast<uint8_t>(CodecId::kCodebook);
  if (!codebook && h.codec != static_cast<uint8_t>(CodecId::kAffine)) return false;
  if (h.code_coding != 0 || (codebook && h.bits > 4)) return false;  // rANS: expanded first (lowbit.cpp)
  const Kernels& k = *arch->kernels;
  const elem::Geometry g = elem::geometry(h);
  const uint64_t rv = g.row_values;
  const size_t es = DTypeSize(out);
  auto* o = static_cast<uint8_t*>(dst);
  const elem::RowSplit sp = elem::split_rows(h, r0, r1);

  if (sp.sink_begin < sp.sink_end) {  // sink rows
    const uint32_t r = sp.sink_begin, e = sp.sink_end;
    k.f16_rows(b.payload + h.parts[kPartSinkRows].offset + uint64_t(r) * rv * 2, uint64_t(e - r) * rv, out, o);
    o += uint64_t(e - r) * rv * es;
  }
  if (sp.quant_begin < sp.quant_end) {  // quantized rows
    const uint32_t r = sp.quant_begin, e = sp.quant_end;
    constexpr uint32_t kPad = 16;
    DecodePlan p;
    p.codes = b.payload + h.parts[kPartCodes].offset;
    p.code_bytes = h.parts[kPartCodes].bytes;
    p.bits = h.bits;
    p.row_values = g.row_values;
    p.codebook = codebook;
    if (codebook)
      for (uint32_t i = 0; i < (1u << h.bits); ++i) p.levels[i] = elem::load_f32(b.payload + h.parts[kPartCodebook].offset + 4 * i);
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
          lo[gc] = elem::load_f16(range);
          step[gc] = elem::meta_step(lo[gc], elem::load_f16(range + 2), h.meta_bits);
        }
        p.col_lo[f] = lo;
        p.col_step[f] = step;
      }
    }
    p.group_scale = take(gcp);
    p.group_min = take(gcp);
    p.elem_scale = take(rvp);
    p.elem_min = take(rvp);
    if (rotate) {
      p.rotate = true;
      p.head_dim = h.head_dim;
      p.rot_block = h.rot_block;
      p.rot_c = elem::hadamard_scale(h.rot_block);
      p.row = take(rvp);
      sign.resize(rvp);
      for (uint32_t i = 0; i < h.head_dim; ++i) sign[i] = elem::hadamard_negative(h.rot_seed, i) ? 0x80000000u : 0u;
      for (uint64_t i = h.head_dim; i < rv; ++i) sign[i] = sign[i % h.head_dim];
      p.sign = sign.data();
    }
    p.f16_to_f32 = &F16ToF32;
    p.meta_values = &MetaValues;
    p.butterflies = &Butterflies;
    k.rows(p, r - h.n_sink, e - h.n_sink, out, o);
    o += uint64_t(e - r) * rv * es;
  }
  if (sp.resid_begin < sp.resid_end)  // residual rows
    k.f16_rows(b.payload + h.parts[kPartResidualRows].offset + uint64_t(sp.resid_begin - sp.resid_first) * rv * 2,
               uint64_t(sp.resid_end - sp.resid_begin) * rv, out, o);
  return true;
}

bool F16Rows(const uint8_t* src, uint64_t n, DType out, void* dst) {
  const Arch* arch = Active();
  if (!arch->kernels || out == DType::kF16) return false;
  arch->kernels->f16_rows(src, n, out, dst);
  return true;
}

bool F32ToF16(const float* src, uint64_t n, uint8_t* dst) {
  const Arch* arch = Active();
  if (!arch->kernels) return false;
  constexpr uint64_t kChunk = 4096;
  alignas(64) float decoded[kChunk + 16];  // the kernel's check reads back what it stored
  for (uint64_t i = 0; i < n; i += kChunk) {
    const uint64_t k = std::min(kChunk, n - i);
    if (!arch->kernels->enc_meta_f16(src + i, k, dst + 2 * i, decoded)) return false;
  }
  return true;
}

bool RopeRotate(const RopeUndo& r, float* rows, uint32_t n_rows, uint32_t n_heads, uint32_t head_dim,
                const int32_t* positions, int sign) {
  const Arch* arch = Active();
  if (!arch->kernels) return false;
  std::vector<double> cs(2 * r.theta.size());
  arch->kernels->rope_rows(r.theta.data(), r.theta.size(), r.style == RopeUndo::kNorm, sign, rows, n_rows, n_heads,
                           head_dim, positions, cs.data());
  return true;
}

namespace {

// The widest table at or below the active ISA whose vectors tile the block: rows of row_values
// and token-axis groups of col_span values (both multiples of 8; AVX-512 needs 16).
const Kernels* EncodeKernels(const elem::Geometry& g) {
  const Arch* active = Active();
  bool seen = false;
  for (const Arch& a : Available()) {
    seen = seen || &a == active;
    if (!seen) continue;
    if (!a.kernels) return nullptr;
    const uint32_t n = a.kernels->lanes;
    if (g.row_values % n == 0 && (g.col_span == 1 || g.col_span % n == 0)) return a.kernels;
  }
  return nullptr;
}

// lowbit::StoreMetaField for meta-coded fields (meta_bits 4 or 8), vectorized across the grid's
// columns when they fill whole vectors; false on any error (the reference then reports it).
bool StoreMetaCoded(const Kernels& k, const elem::Geometry& g, elem::MetaField field, const std::vector<float>& values,
                    EncodedBlock* out, std::vector<float>* decoded) {
  if (g.group_cols % k.lanes != 0) return lowbit::StoreMetaField(g, field, values, out, decoded).ok();
  const BlockHeader& h = out->header;
  decoded->resize(values.size());
  if (values.empty()) return true;
  const uint32_t m = h.meta_bits;
  std::vector<float> lo(g.group_cols), hi(g.group_cols), step(g.group_cols);
  k.enc_column_ranges(values.data(), g.group_rows, g.group_cols, lo.data(), hi.data());
  for (uint32_t gc = 0; gc < g.group_cols; ++gc) {
    const uint16_t a16 = lowbit::F16Down(lo[gc]), b16 = lowbit::F16Up(hi[gc]);
    if (!std::isfinite(f16_to_f32(a16)) || !std::isfinite(f16_to_f32(b16))) return false;
    lowbit::PutColumnRange(g, field, gc, a16, b16, m, out, &lo[gc], &step[gc]);
  }
  k.enc_meta_codes(values.data(), g.group_rows, g.group_cols, m, lo.data(), step.data(),
                   out->parts[field == elem::kFieldScale ? kPartScales : kPartMins].data(), decoded->data());
  return true;
}

// Values per chunk: the encoder takes whole group rows, ~128 KiB of fp32 at a time, so that the
// codes pass reads what the range pass left in L2.
constexpr uint64_t kChunkValues = 32768;

}  // namespace

bool EncodeAffine(const CodecSpec& spec, const float* src, BlockShape shape, EncodedBlock* out, Status* status) {
  if (!Active()->kernels || spec.entropy != Entropy::kNone) return false;  // rANS specs: the reference
  auto reference = [&] {
    *status = lowbit::EncodeAffineScalar(spec, src, shape, out);
    return true;
  };
  if (Status s = lowbit::BeginEncodeHeader(spec, src, shape, out); !s.ok()) {
    *status = s;
    return true;
  }
  const BlockHeader& h = out->header;
  const elem::Geometry g = elem::geometry(h);
  const Kernels* k = EncodeKernels(g);
  if (!k) return reference();
  const uint64_t rv = g.row_values;
  const float* x = src + uint64_t(h.n_sink) * rv;
  const bool rotate = h.rotation == static_cast<uint8_t>(Rotation::kHadamard);

  EncodePlan p;
  p.bits = h.bits;
  p.levels = static_cast<float>((1u << h.bits) - 1u);
  p.row_values = g.row_values;
  p.group_cols = g.group_cols;
  p.col_span = g.col_span;
  p.row_span = g.row_span;
  std::vector<uint32_t> sign;
  if (rotate) {
    p.rot_block = h.rot_block;
    p.rot_c = elem::hadamard_scale(h.rot_block);
    sign.resize(rv);
    for (uint32_t i = 0; i < h.head_dim; ++i) sign[i] = elem::hadamard_negative(h.rot_seed, i) ? 0x80000000u : 0u;
    for (uint64_t i = h.head_dim; i < rv; ++i) sign[i] = sign[i % h.head_dim];
    p.sign = sign.data();
    p.butterflies = &Butterflies;
  }

  // Chunks of whole group rows; the rotation (when asked) goes to a chunk-sized buffer.
  const uint64_t group_row_values = uint64_t(g.row_span) * rv;
  const uint32_t chunk = static_cast<uint32_t>(std::max<uint64_t>(1, kChunkValues / group_row_values));
  const uint64_t groups = uint64_t(g.group_rows) * g.group_cols;
  std::vector<float> rotated(rotate ? std::min<uint64_t>(uint64_t(chunk) * group_row_values, uint64_t(g.q_rows) * rv) : 0);
  auto rows_of = [&](uint32_t gr0, uint32_t* t0, uint32_t* t1) {
    *t0 = gr0 * g.row_span;
    *t1 = uint64_t(*t0) + uint64_t(chunk) * g.row_span < g.q_rows ? *t0 + chunk * g.row_span : g.q_rows;
  };
  auto input = [&](uint32_t t0, uint32_t t1) {
    if (!rotate) return x + uint64_t(t0) * rv;
    k->enc_rotate(p, x + uint64_t(t0) * rv, t1 - t0, rotated.data());
    return static_cast<const float*>(rotated.data());
  };
  // Per-group arrays: the chunk's groups (fp16 metadata: one chunk at a time, each group on
  // its own) or every group (meta-coded: the shared ranges need them all before any code).
  const bool meta16 = h.meta_bits == 16;
  const uint64_t n_arr = meta16 ? std::min<uint64_t>(groups, uint64_t(chunk) * g.group_cols) : groups;
  std::vector<float> lo(n_arr), hi(n_arr), scales(n_arr), mins(n_arr), s(n_arr), mn(n_arr);
  uint8_t* codes = out->parts[kPartCodes].data();

  for (uint32_t gr0 = 0; gr0 < g.group_rows; gr0 += chunk) {
    uint32_t t0, t1;
    rows_of(gr0, &t0, &t1);
    const float* xs = input(t0, t1);
    const uint32_t gr1 = std::min(g.group_rows, gr0 + chunk);
    const uint64_t i0 = uint64_t(gr0) * g.group_cols, i1 = uint64_t(gr1) * g.group_cols;
    const uint64_t a0 = meta16 ? 0 : i0;  // array index of group i0
    // (a) ranges; a non-finite value is the reference's error to report.
    if (!k->enc_ranges(p, xs, t1 - t0, lo.data() + a0, hi.data() + a0)) return reference();
    // Where a range ends at zero, which zero (-0.0 or +0.0) is the reference's first smallest /
    // last largest: take the group again in its order.
    elem::Geometry local = g;
    local.q_rows = t1 - t0;
    for (uint64_t i = i0; i < i1; ++i) {
      float* l = &lo[a0 + i - i0];
      float* u = &hi[a0 + i - i0];
      if (*l == 0.0f || *u == 0.0f)
        lowbit::GroupRange(local, xs, static_cast<uint32_t>(i / g.group_cols) - gr0, static_cast<uint32_t>(i % g.group_cols), l, u);
    }
    if (!meta16) continue;
    // (b) metadata of these groups, (c) their codes while the chunk is in cache. A metadata
    // error goes to the reference, which reports the first one in its own order.
    // (b1) the metadata rule, (b2) fp16 storage (the bytes of lowbit::StoreMetaF16).
    lowbit::AffineGroupMeta(lo.data(), hi.data(), i1 - i0, (1u << h.bits) - 1u, scales.data(), mins.data(), spec.affine_rule);
    if (!k->enc_meta_f16(scales.data(), i1 - i0, out->parts[kPartScales].data() + 2 * i0, s.data()) ||
        !k->enc_meta_f16(mins.data(), i1 - i0, out->parts[kPartMins].data() + 2 * i0, mn.data()))
      return reference();
    const uint64_t ahead_n = uint64_t(std::min<uint64_t>(g.q_rows, t1 + uint64_t(t1 - t0)) - t1) * rv;
    k->enc_codes(p, xs, t1 - t0, s.data(), mn.data(), codes + uint64_t(t0) * rv * h.bits / 8, x + uint64_t(t1) * rv, ahead_n);
  }
  if (!meta16) {
    // Meta-coded fields share a per-column range over all group rows: (b) needs every group
    // first, then (c) takes the input (rotated again) a second time.
    lowbit::AffineGroupMeta(lo.data(), hi.data(), groups, (1u << h.bits) - 1u, scales.data(), mins.data(), spec.affine_rule);
    if (!StoreMetaCoded(*k, g, elem::kFieldScale, scales, out, &s) || !StoreMetaCoded(*k, g, elem::kFieldMin, mins, out, &mn))
      return reference();
    for (uint32_t gr0 = 0; gr0 < g.group_rows; gr0 += chunk) {
      uint32_t t0, t1;
      rows_of(gr0, &t0, &t1);
      const uint64_t i0 = uint64_t(gr0) * g.group_cols;
      const uint64_t ahead_n = uint64_t(std::min<uint64_t>(g.q_rows, t1 + uint64_t(t1 - t0)) - t1) * rv;
      k->enc_codes(p, input(t0, t1), t1 - t0, s.data() + i0, mn.data() + i0, codes + uint64_t(t0) * rv * h.bits / 8,
                   x + uint64_t(t1) * rv, ahead_n);
    }
  }
  *status = Status::OK();
  return true;
}

}  // namespace codec::simd

std::vector<std::string> SimdArchs() {
  std::vector<std::string> v;
  for (const auto& a : codec::simd::Available()) v.emplace_back(a.name);
  return v;
}

std::string ActiveSimdArch() { return codec::simd::Active()->name; }

std::string SimdEnvWarning() { return codec::simd::Env().warning; }

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
