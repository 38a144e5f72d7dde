// Internal: what safetensors, npz and npy share (spec/INTEROP.md): element types, the tensor
// naming convention, ModelInfo <-> string map, and KvSet <-> named arrays.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mqkv/kvset.h"

namespace mqkv::adapters::interop {

enum class ElemType : uint8_t { kF64, kF32, kF16, kBF16, kI32, kI64 };
size_t ElemSize(ElemType t);
const char* ElemName(ElemType t);  // "f64", "f32", "f16", "bf16", "i32", "i64"
inline bool IsFloat(ElemType t) { return t == ElemType::kF64 || t == ElemType::kF32 || t == ElemType::kF16 || t == ElemType::kBF16; }

using StringMap = std::vector<std::pair<std::string, std::string>>;

// An array as found in a file. `data` holds product(shape) elements (the parser checked the
// byte count), little-endian unless big_endian (npy '>' descriptors).
struct ArrayView {
  std::string name;
  ElemType type = ElemType::kF32;
  std::vector<uint64_t> shape;
  const uint8_t* data = nullptr;
  bool big_endian = false;
  uint64_t count() const;
};

// Product of dims times elem_size, false on overflow.
bool ByteSize(const std::vector<uint64_t>& shape, size_t elem_size, uint64_t* bytes);

// Converts elements [first, first + n) of `a` to fp32 (f64 rounds to nearest; f16/bf16 exact).
void ToF32(const ArrayView& a, uint64_t first, uint64_t n, float* dst);

// Builds a KvSet from named arrays (spec/INTEROP.md, "Names and shapes") and the string map
// ("Metadata"). `origin` becomes model.source_format when the map does not set it.
// lazy: K/V tensors get KvTensor::load reading the arrays' memory when called (the caller keeps
// it alive through KvSet::backing) instead of being converted now.
// `release`, when given, is called with each lazy array's bytes once they are converted (a file
// mapping drops those pages: ByteSource::Release).
Result<KvSet> Assemble(const std::vector<ArrayView>& arrays, const StringMap& meta, std::string_view origin,
                       bool lazy = false, std::function<void(const uint8_t*, uint64_t)> release = {});

// Whether no value of n f16 values is an infinity or a NaN (exponent field all ones).
bool AllFiniteF16(const uint16_t* v, uint64_t n);

// One array to write: its bytes are produced on demand so a writer holds one tensor at a time.
struct ArrayOut {
  std::string name;
  ElemType type = ElemType::kF32;
  std::vector<uint64_t> shape;
  const float* f32 = nullptr;    // source values (K, V, Q), or
  const int32_t* i32 = nullptr;  // source integers (tokens, positions, seq ids, q positions)
  uint64_t count = 0;
  const KvTensor* source = nullptr;  // the tensor (K, V, Q): when lazy, f32 is null until the writer loads it
  uint64_t bytes() const { return count * ElemSize(type); }
  void Encode(uint8_t* dst) const;  // little-endian
};

struct WritePlan {
  std::vector<ArrayOut> arrays;
  StringMap metadata;  // "mqkv.*" model fields, "mqkv.source_dtype.<name>", "meta.<key>"
};

// Lays a KvSet out as named arrays, each K/V/Q tensor as OutputType says.
Result<WritePlan> Plan(const KvSet& set, bool allow_bf16, std::string_view dtype = {});
// The element type a tensor is written as (spec/INTEROP.md section 1.1): `dtype` ("f16", "bf16",
// "f32") when given, else the source dtype when it is f16 (or bf16 and allow_bf16), else f32.
// Rounding to f16/bf16 is to nearest even; a finite value beyond the type's range is an error.
Result<ElemType> OutputType(const KvTensor& t, bool allow_bf16, std::string_view dtype);
// The range part of OutputType for rows loaded later (a lazy tensor): a finite value beyond f16's
// range is an error naming the tensor, unless every value is exact in f16.
Status CheckRange(const KvTensor& t, const std::vector<float>& rows, ElemType type);

// Values of the ModelInfo string map.
StringMap ModelToMap(const ModelInfo& m);

}  // namespace mqkv::adapters::interop
