// ggml element types, quantizers and llama.cpp's cache rotation (ggml_types.h).
#include "ggml_types.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>

#include "mqkv/numeric.h"

namespace mqkv::adapters::ggml {
namespace {

// ggml block quantization, exactly as ggml-quants.c (quantize_row_*_ref / dequantize_row_*).
void DequantQ8_0(const uint8_t* b, float* y, uint64_t n_blocks) {
  for (uint64_t i = 0; i < n_blocks; ++i, b += 34) {
    uint16_t dh;
    std::memcpy(&dh, b, 2);
    const float d = f16_to_f32(dh);
    for (int j = 0; j < 32; ++j) y[i * 32 + j] = float(static_cast<int8_t>(b[2 + j])) * d;
  }
}
void DequantQ4_0(const uint8_t* b, float* y, uint64_t n_blocks) {
  for (uint64_t i = 0; i < n_blocks; ++i, b += 18) {
    uint16_t dh;
    std::memcpy(&dh, b, 2);
    const float d = f16_to_f32(dh);
    for (int j = 0; j < 16; ++j) {
      const int x0 = (b[2 + j] & 0x0F) - 8;
      const int x1 = (b[2 + j] >> 4) - 8;
      y[i * 32 + j] = float(x0) * d;
      y[i * 32 + j + 16] = float(x1) * d;
    }
  }
}
void QuantQ8_0(const float* x, uint8_t* b, uint64_t n_blocks) {
  for (uint64_t i = 0; i < n_blocks; ++i, b += 34) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[i * 32 + j]));
    const float d = amax / ((1 << 7) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    const uint16_t dh = f32_to_f16(d);
    std::memcpy(b, &dh, 2);
    for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::roundf(x[i * 32 + j] * id)));
  }
}
void QuantQ4_0(const float* x, uint8_t* b, uint64_t n_blocks) {
  for (uint64_t i = 0; i < n_blocks; ++i, b += 18) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      const float v = x[i * 32 + j];
      if (amax < std::fabs(v)) {
        amax = std::fabs(v);
        max = v;
      }
    }
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    const uint16_t dh = f32_to_f16(d);
    std::memcpy(b, &dh, 2);
    for (int j = 0; j < 16; ++j) {
      const float x0 = x[i * 32 + j] * id;
      const float x1 = x[i * 32 + 16 + j] * id;
      const uint8_t xi0 = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(x0 + 8.5f)));
      const uint8_t xi1 = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(x1 + 8.5f)));
      b[2 + j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
    }
  }
}

void F32ToF32(const uint8_t* src, uint64_t n, float* dst) { std::memcpy(dst, src, n * 4); }
void F32FromF32(const float* src, uint64_t n, uint8_t* dst) { std::memcpy(dst, src, n * 4); }
// 16-bit element types: widen / narrow each value with the numeric.h conversion.
template <float (*Widen)(uint16_t)>
void Half16ToF32(const uint8_t* src, uint64_t n, float* dst) {
  for (uint64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = Widen(h);
  }
}
template <uint16_t (*Narrow)(float)>
void Half16FromF32(const float* src, uint64_t n, uint8_t* dst) {
  for (uint64_t i = 0; i < n; ++i) {
    const uint16_t h = Narrow(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}
float F16Widen(uint16_t h) { return f16_to_f32(h); }
float BF16Widen(uint16_t h) { return bf16_to_f32(h); }
uint16_t F16Narrow(float f) { return f32_to_f16(f); }
uint16_t BF16Narrow(float f) { return f32_to_bf16(f); }
void Q8_0ToF32(const uint8_t* src, uint64_t n, float* dst) { DequantQ8_0(src, dst, n / 32); }
void Q8_0FromF32(const float* src, uint64_t n, uint8_t* dst) { QuantQ8_0(src, dst, n / 32); }
void Q4_0ToF32(const uint8_t* src, uint64_t n, float* dst) { DequantQ4_0(src, dst, n / 32); }
void Q4_0FromF32(const float* src, uint64_t n, uint8_t* dst) { QuantQ4_0(src, dst, n / 32); }

constexpr std::array<Type, 5> kTypes = {{
    {0, "f32", 1, 4, &F32ToF32, &F32FromF32},
    {1, "f16", 1, 2, &Half16ToF32<&F16Widen>, &Half16FromF32<&F16Narrow>},
    {2, "q4_0", 32, 18, &Q4_0ToF32, &Q4_0FromF32},
    {8, "q8_0", 32, 34, &Q8_0ToF32, &Q8_0FromF32},
    {30, "bf16", 1, 2, &Half16ToF32<&BF16Widen>, &Half16FromF32<&BF16Narrow>},
}};

// The Hadamard rotation llama.cpp applies to quantized caches (llama-kv-cache.cpp, attn_rot_k /
// attn_rot_v): each run of `n` consecutive row elements is multiplied by the orthonormal
// Sylvester-Walsh-Hadamard matrix H_n (H_n^2 = I), so the same transform undoes it.
void Hadamard(float* x, uint32_t n) {
  std::vector<double> t(x, x + n);
  for (uint32_t len = 1; len < n; len <<= 1)
    for (uint32_t i = 0; i < n; i += len << 1)
      for (uint32_t j = i; j < i + len; ++j) {
        const double a = t[j], b = t[j + len];
        t[j] = a + b;
        t[j + len] = a - b;
      }
  const double s = 1.0 / std::sqrt(double(n));
  for (uint32_t i = 0; i < n; ++i) x[i] = static_cast<float>(t[i] * s);
}

}  // namespace

void RotateRows(std::vector<float>& data, uint32_t nrot) {
  if (nrot == 0) return;
  for (size_t i = 0; i + nrot <= data.size(); i += nrot) Hadamard(data.data() + i, nrot);
}

// Rotation size llama.cpp uses for a cache of type `t` with heads of `head_dim` elements
// (0 = none): K takes the largest power of two >= 64 dividing head_dim, V always 64.
uint32_t RotSize(const Type& t, uint32_t head_dim, bool is_k) {
  if (!t.quantized() || head_dim == 0 || head_dim % 64 != 0) return 0;
  if (!is_k) return 64;
  uint32_t n = 64;
  while (head_dim % (n * 2) == 0) n *= 2;
  return n;
}

const Type* TypeById(int32_t id) {
  for (const Type& t : kTypes)
    if (t.id == id) return &t;
  return nullptr;
}
const Type* TypeByName(std::string_view n) {
  for (const Type& t : kTypes)
    if (n == t.name) return &t;
  return nullptr;
}

// Names of the other ggml types, for error messages only.
std::string TypeName(int32_t id) {
  static const char* const kOther[] = {nullptr, nullptr, nullptr, "q4_1", nullptr, nullptr, "q5_0", "q5_1", nullptr,
                                       "q8_1",  "q2_K",  "q3_K",  "q4_K", "q5_K",  "q6_K",  "q8_K"};
  if (const Type* t = TypeById(id)) return t->name;
  if (id >= 0 && id < int32_t(std::size(kOther)) && kOther[id]) return kOther[id];
  return "ggml type id " + std::to_string(id);
}

}  // namespace mqkv::adapters::ggml
