#include "interop.h"

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <optional>

#include "codec/simd.h"
#include "mqkv/numeric.h"
#include "util/text.h"

namespace mqkv::adapters::interop {
namespace {

constexpr const char* kInteropVersion = "1";
constexpr std::string_view kSourceDtypePrefix = "mqkv.source_dtype.";
constexpr std::string_view kFreePrefix = "meta.";
constexpr uint32_t kMaxLayer = 1u << 20;

enum class What { kKv, kHfKv, kQ, kQPos, kTokens, kPositions, kSeqIds };
struct Name {
  What what;
  uint32_t layer = 0;
  Kind kind = Kind::kK;
};

bool ParseIndex(std::string_view s, uint32_t* out) {
  if (s.empty() || s.size() > 7 || (s.size() > 1 && s[0] == '0')) return false;
  uint32_t x = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    x = x * 10 + uint32_t(c - '0');
  }
  if (x >= kMaxLayer) return false;
  *out = x;
  return true;
}

std::optional<Name> ParseName(std::string_view n) {
  if (n == "tokens") return Name{What::kTokens};
  if (n == "positions") return Name{What::kPositions};
  if (n == "seq_ids") return Name{What::kSeqIds};
  for (auto [prefix, hf] : {std::pair<std::string_view, bool>{"layers.", false}, {"past_key_values.", true}}) {
    if (n.substr(0, prefix.size()) != prefix) continue;
    std::string_view rest = n.substr(prefix.size());
    const size_t dot = rest.find('.');
    if (dot == std::string_view::npos) return std::nullopt;
    Name out{hf ? What::kHfKv : What::kKv};
    if (!ParseIndex(rest.substr(0, dot), &out.layer)) return std::nullopt;
    const std::string_view leaf = rest.substr(dot + 1);
    if (hf) {
      if (leaf == "key") out.kind = Kind::kK;
      else if (leaf == "value") out.kind = Kind::kV;
      else return std::nullopt;
    } else {
      if (leaf == "k") out.kind = Kind::kK;
      else if (leaf == "v") out.kind = Kind::kV;
      else if (leaf == "q") out.what = What::kQ, out.kind = Kind::kQ;
      else if (leaf == "q_positions") out.what = What::kQPos, out.kind = Kind::kQ;
      else return std::nullopt;
    }
    return out;
  }
  return std::nullopt;
}

std::string ShapeString(const std::vector<uint64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

Status Bad(const ArrayView& a, const std::string& m) { return FormatError("tensor \"" + a.name + "\": " + m); }

template <typename T>
T Load(const uint8_t* p, bool be) {
  uint8_t b[sizeof(T)];
  std::memcpy(b, p, sizeof(T));
  if (be) std::reverse(b, b + sizeof(T));
  T v;
  std::memcpy(&v, b, sizeof(T));
  return v;
}

Result<std::vector<int32_t>> Ints(const ArrayView& a) {
  if (a.type != ElemType::kI32 && a.type != ElemType::kI64)
    return Bad(a, std::string("must hold integers (I32 or I64), not ") + ElemName(a.type));
  if (a.shape.size() != 1) return Bad(a, "must be one-dimensional, shape is " + ShapeString(a.shape));
  std::vector<int32_t> v(a.shape[0]);
  for (uint64_t i = 0; i < v.size(); ++i) {
    if (a.type == ElemType::kI32) {
      v[i] = Load<int32_t>(a.data + 4 * i, a.big_endian);
    } else {
      const int64_t x = Load<int64_t>(a.data + 8 * i, a.big_endian);
      if (x < INT32_MIN || x > INT32_MAX) return Bad(a, "element " + std::to_string(i) + " = " + std::to_string(x) + " does not fit in 32 bits");
      v[i] = static_cast<int32_t>(x);
    }
  }
  return v;
}

Status CheckDims(const ArrayView& a, size_t rank) {
  if (!IsFloat(a.type)) return Bad(a, std::string("must hold floating-point values, not ") + ElemName(a.type));
  if (a.shape.size() != rank) return Bad(a, "must have " + std::to_string(rank) + " dimensions, shape is " + ShapeString(a.shape));
  for (size_t i = 0; i < rank; ++i)
    if (a.shape[i] > 0xFFFFFFFFull) return Bad(a, "dimension " + std::to_string(i) + " of shape " + ShapeString(a.shape) + " exceeds 2^32-1");
  return Status::OK();
}

Result<uint32_t> U32(const std::string& key, const std::string& v) {
  if (v.empty() || v.size() > 10) return FormatError("metadata \"" + key + "\" = \"" + v + "\" is not an unsigned 32-bit integer");
  uint64_t x = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return FormatError("metadata \"" + key + "\" = \"" + v + "\" is not an unsigned 32-bit integer");
    x = x * 10 + uint64_t(c - '0');
  }
  if (x > 0xFFFFFFFFull) return FormatError("metadata \"" + key + "\" = \"" + v + "\" is not an unsigned 32-bit integer");
  return static_cast<uint32_t>(x);
}

std::string FloatText(float f) { return text::GeneralFloat(f, 9); }  // "%.9g", locale-independent

bool ExactF16(const std::vector<float>& v) { return exact_in_f16(v.data(), v.size()); }

const char* LeafName(Kind k) { return k == Kind::kK ? "k" : k == Kind::kV ? "v" : "q"; }

}  // namespace

size_t ElemSize(ElemType t) {
  switch (t) {
    case ElemType::kF64:
    case ElemType::kI64: return 8;
    case ElemType::kF32:
    case ElemType::kI32: return 4;
    case ElemType::kF16:
    case ElemType::kBF16: return 2;
  }
  return 0;
}

const char* ElemName(ElemType t) {
  switch (t) {
    case ElemType::kF64: return "f64";
    case ElemType::kF32: return "f32";
    case ElemType::kF16: return "f16";
    case ElemType::kBF16: return "bf16";
    case ElemType::kI32: return "i32";
    case ElemType::kI64: return "i64";
  }
  return "?";
}

uint64_t ArrayView::count() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;  // checked by the parser (ByteSize)
  return n;
}

bool ByteSize(const std::vector<uint64_t>& shape, size_t elem_size, uint64_t* bytes) {
  uint64_t n = elem_size;
  for (uint64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) return false;
  *bytes = n;
  return true;
}

void ToF32(const ArrayView& a, uint64_t first, uint64_t n, float* dst) {
  if (n == 0) return;  // an empty array may have no data pointer (memcpy needs non-null)
  const bool be = a.big_endian;
  switch (a.type) {
    case ElemType::kF32:
      if (!be) {
        std::memcpy(dst, a.data + first * 4, n * 4);
      } else {
        for (uint64_t i = 0; i < n; ++i) dst[i] = Load<float>(a.data + (first + i) * 4, true);
      }
      break;
    case ElemType::kF16:
      if (!be && codec::simd::F16Rows(a.data + first * 2, n, DType::kF32, dst)) break;  // bit-identical
      for (uint64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(Load<uint16_t>(a.data + (first + i) * 2, be));
      break;
    case ElemType::kBF16:
      for (uint64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(Load<uint16_t>(a.data + (first + i) * 2, be));
      break;
    case ElemType::kF64:
      for (uint64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(Load<double>(a.data + (first + i) * 8, be));
      break;
    case ElemType::kI32:
    case ElemType::kI64: break;  // never called for integers (Assemble checks the type)
  }
}

// One K or V array (mqkv naming [tokens, heads, dim] or Hugging Face [1, heads, tokens, dim]).
// A K/V array's values as fp32 rows [tokens][heads][dim] (Hugging Face arrays are [1, heads, tokens, dim]).
void FillRows(const ArrayView& a, bool hf, uint64_t T, uint64_t H, uint64_t D, float* dst) {
  if (!hf) {
    ToF32(a, 0, T * H * D, dst);
  } else {
    for (uint64_t h = 0; h < H; ++h)
      for (uint64_t tok = 0; tok < T; ++tok) ToF32(a, (h * T + tok) * D, D, dst + (tok * H + h) * D);
  }
}

Result<KvTensor> KvFromArray(const ArrayView& a, const Name& nm, bool lazy,
                             const std::function<void(const uint8_t*, uint64_t)>& release) {
  const Name* n = &nm;
  const bool hf = n->what == What::kHfKv;
  MQKV_RETURN_IF_ERROR(CheckDims(a, hf ? 4 : 3));
  if (hf && a.shape[0] != 1)
    return Bad(a, "batch size is " + std::to_string(a.shape[0]) + "; only batch 1 (one sequence) can be stored, shape " + ShapeString(a.shape));
  KvTensor t;
  t.desc.layer = n->layer;
  t.desc.kind = n->kind;
  // mqkv naming: [tokens, heads, dim]; Hugging Face: [batch=1, heads, tokens, dim].
  t.desc.n_tokens = static_cast<uint32_t>(hf ? a.shape[2] : a.shape[0]);
  t.desc.n_heads = static_cast<uint32_t>(a.shape[1]);
  t.desc.head_dim = static_cast<uint32_t>(hf ? a.shape[3] : a.shape[2]);
  t.desc.source_dtype = ElemName(a.type);
  const uint64_t T = t.desc.n_tokens, H = t.desc.n_heads, D = t.desc.head_dim;
  if (lazy) {  // converted when loaded; the caller keeps a.data's memory alive (KvSet::backing)
    t.load = [a, hf, T, H, D, release]() -> Result<std::vector<float>> {
      std::vector<float> rows(T * H * D);
      FillRows(a, hf, T, H, D, rows.data());
      if (release) release(a.data, T * H * D * ElemSize(a.type));
      return rows;
    };
    t.load_into = [a, hf, T, H, D, release](float* dst) -> Status {
      FillRows(a, hf, T, H, D, dst);
      if (release) release(a.data, T * H * D * ElemSize(a.type));
      return Status::OK();
    };
    if (a.type == ElemType::kF16 || a.type == ElemType::kBF16) t.exact_in = ElemName(a.type);
    return t;
  }
  t.data.resize(T * H * D);
  FillRows(a, hf, T, H, D, t.data.data());
  return t;
}

// A layer's query rows and their positions.
Result<KvTensor> QueryFromArrays(uint32_t layer, const ArrayView& a, const ArrayView& positions) {
  MQKV_RETURN_IF_ERROR(CheckDims(a, 3));
  MQKV_ASSIGN_OR_RETURN(std::vector<int32_t> pos, Ints(positions));
  if (pos.size() != a.shape[0])
    return Bad(positions, std::to_string(pos.size()) + " positions for " + std::to_string(a.shape[0]) + " query rows");
  for (int32_t p : pos)
    if (p < 0) return Bad(positions, "negative position " + std::to_string(p));
  KvTensor t;
  t.desc.layer = layer;
  t.desc.kind = Kind::kQ;
  t.desc.n_tokens = static_cast<uint32_t>(a.shape[0]);
  t.desc.n_heads = static_cast<uint32_t>(a.shape[1]);
  t.desc.head_dim = static_cast<uint32_t>(a.shape[2]);
  t.desc.positions = std::move(pos);
  t.desc.source_dtype = ElemName(a.type);
  t.data.resize(uint64_t(t.desc.n_tokens) * t.desc.n_heads * t.desc.head_dim);
  ToF32(a, 0, t.data.size(), t.data.data());
  return t;
}

// Which model fields the file stated (the rest are derived from the tensors).
struct Stated {
  bool n_layer = false, n_head = false, n_head_kv = false, dim_k = false, dim_v = false;
};

// The interop metadata (spec/INTEROP.md): model facts, source dtypes of named tensors, free keys.
Status ApplyMetadata(const StringMap& meta, const std::map<std::string, KvTensor*>& by_name, std::string_view origin, KvSet* out,
                     Stated* stated) {
  ModelInfo& m = out->model;
  std::map<std::string, std::string> free;
  bool fmt = false;
  for (const auto& kv : meta) {
    const std::string& k = kv.first;
    const std::string& v = kv.second;
    auto num = [&](uint32_t* dst, bool* seen) -> Status {
      MQKV_ASSIGN_OR_RETURN(*dst, U32(k, v));
      *seen = true;
      return Status::OK();
    };
    if (k.rfind(kSourceDtypePrefix, 0) == 0) {
      auto it = by_name.find(k.substr(kSourceDtypePrefix.size()));
      if (it == by_name.end()) return FormatError("metadata \"" + k + "\" names a tensor the file does not hold");
      it->second->desc.source_dtype = v;
    } else if (k == "mqkv.interop") {
      if (v != kInteropVersion) return Unsupported("metadata \"mqkv.interop\" = \"" + v + "\": this build reads convention version 1 only");
    } else if (k == "mqkv.architecture") m.architecture = v;
    else if (k == "mqkv.n_layer") MQKV_RETURN_IF_ERROR(num(&m.n_layer, &stated->n_layer));
    else if (k == "mqkv.n_head") MQKV_RETURN_IF_ERROR(num(&m.n_head, &stated->n_head));
    else if (k == "mqkv.n_head_kv") MQKV_RETURN_IF_ERROR(num(&m.n_head_kv, &stated->n_head_kv));
    else if (k == "mqkv.head_dim_k") MQKV_RETURN_IF_ERROR(num(&m.head_dim_k, &stated->dim_k));
    else if (k == "mqkv.head_dim_v") MQKV_RETURN_IF_ERROR(num(&m.head_dim_v, &stated->dim_v));
    else if (k == "mqkv.rope_type") m.rope_type = v;
    else if (k == "mqkv.rope_base") {
      float f = 0;
      if (!text::ParseFloat(v, &f)) return FormatError("metadata \"mqkv.rope_base\" = \"" + v + "\" is not a number");
      m.rope_base = f;
    } else if (k == "mqkv.k_rope") {
      if (v == KRopeName(KRope::kPreRope)) m.k_rope = KRope::kPreRope;
      else if (v == KRopeName(KRope::kPostRope)) m.k_rope = KRope::kPostRope;
      else if (v == KRopeName(KRope::kUnknown)) m.k_rope = KRope::kUnknown;
      else return FormatError("metadata \"mqkv.k_rope\" = \"" + v + "\" (expected pre, post or unknown)");
    } else if (k == "mqkv.source_engine") m.source_engine = v;
    else if (k == "mqkv.source_engine_version") m.source_engine_version = v;
    else if (k == "mqkv.source_format") m.source_format = v, fmt = true;
    else {
      // "meta.<key>" is a free key; any other key (e.g. a writer's "format": "pt") is kept as is.
      std::string key = k.rfind(kFreePrefix, 0) == 0 ? k.substr(kFreePrefix.size()) : k;
      if (key.empty()) return FormatError("metadata key \"" + k + "\" names an empty free key");
      if (!free.emplace(key, v).second) return FormatError("metadata key \"" + key + "\" is given twice (with and without \"meta.\")");
    }
  }
  m.metadata.assign(free.begin(), free.end());
  if (!fmt) m.source_format = std::string(origin);

  return Status::OK();
}

// Every K/V tensor holds the same tokens, and the per-token vectors match them.
Status CheckRows(const KvSet& set) {
  const ModelInfo& m = set.model;
  std::optional<uint32_t> rows;
  for (const KvTensor& t : set.tensors) {
    if (t.desc.kind == Kind::kQ) continue;
    if (rows && *rows != t.desc.n_tokens)
      return FormatError(std::string("layer ") + std::to_string(t.desc.layer) + " " + KindName(t.desc.kind) + " holds " +
                         std::to_string(t.desc.n_tokens) + " tokens, others hold " + std::to_string(*rows));
    rows = t.desc.n_tokens;
  }
  if (!m.tokens.empty() && rows && m.tokens.size() != *rows)
    return FormatError("\"tokens\" holds " + std::to_string(m.tokens.size()) + " ids for " + std::to_string(*rows) + " cached rows");
  if (!m.positions.empty() && m.positions.size() != m.tokens.size())
    return FormatError("\"positions\" holds " + std::to_string(m.positions.size()) + " entries for " + std::to_string(m.tokens.size()) + " tokens");
  if (!m.seq_ids.empty() && m.seq_ids.size() != m.tokens.size())
    return FormatError("\"seq_ids\" holds " + std::to_string(m.seq_ids.size()) + " entries for " + std::to_string(m.tokens.size()) + " tokens");

  return Status::OK();
}

// Model fields the file did not state, from the tensors.
void DeriveModel(const Stated& stated, KvSet* set) {
  ModelInfo& m = set->model;
  // Model fields the file did not state are derived from the tensors.
  for (const KvTensor& t : set->tensors) {
    if (!stated.n_layer) m.n_layer = std::max(m.n_layer, t.desc.layer + 1);
    if (t.desc.kind == Kind::kK && !stated.n_head_kv && m.n_head_kv == 0) m.n_head_kv = t.desc.n_heads;
    if (t.desc.kind == Kind::kK && !stated.dim_k && m.head_dim_k == 0) m.head_dim_k = t.desc.head_dim;
    if (t.desc.kind == Kind::kV && !stated.dim_v && m.head_dim_v == 0) m.head_dim_v = t.desc.head_dim;
    if (t.desc.kind == Kind::kQ && !stated.n_head && m.n_head == 0) m.n_head = t.desc.n_heads;
  }
}

Result<KvSet> Assemble(const std::vector<ArrayView>& arrays, const StringMap& meta, std::string_view origin, bool lazy,
                       std::function<void(const uint8_t*, uint64_t)> release) {
  KvSet set;
  std::map<uint32_t, std::pair<const ArrayView*, const ArrayView*>> queries;  // layer -> (q, q_positions)
  std::map<std::string, KvTensor*> by_name;
  std::vector<const ArrayView*> names_of;  // parallel to set.tensors: the array each came from
  std::set<std::pair<uint32_t, int>> kv_seen;  // (layer, kind): duplicates in O(log n), not a scan per array
  bool have_tokens = false, have_positions = false, have_seq = false;
  set.tensors.reserve(arrays.size());

  for (const ArrayView& a : arrays) {
    const std::optional<Name> n = ParseName(a.name);
    if (!n)
      return FormatError("unknown tensor name \"" + a.name +
                         "\" (expected layers.N.k, layers.N.v, layers.N.q, layers.N.q_positions, past_key_values.N.key, "
                         "past_key_values.N.value, tokens, positions or seq_ids)");
    switch (n->what) {
      case What::kTokens:
      case What::kPositions:
      case What::kSeqIds: {
        bool& seen = n->what == What::kTokens ? have_tokens : n->what == What::kPositions ? have_positions : have_seq;
        if (seen) return Bad(a, "appears twice");
        seen = true;
        MQKV_ASSIGN_OR_RETURN(std::vector<int32_t> v, Ints(a));
        (n->what == What::kTokens ? set.model.tokens : n->what == What::kPositions ? set.model.positions : set.model.seq_ids) = std::move(v);
        break;
      }
      case What::kQ:
      case What::kQPos: {
        auto& slot = queries[n->layer];
        const ArrayView*& p = n->what == What::kQ ? slot.first : slot.second;
        if (p) return Bad(a, "appears twice");
        p = &a;
        break;
      }
      case What::kKv:
      case What::kHfKv: {
        if (!kv_seen.emplace(n->layer, static_cast<int>(n->kind)).second)
          return Bad(a, std::string("layer ") + std::to_string(n->layer) + " " + KindName(n->kind) + " is given twice");
        MQKV_ASSIGN_OR_RETURN(KvTensor t, KvFromArray(a, *n, lazy, release));
        set.tensors.push_back(std::move(t));
        names_of.push_back(&a);
        break;
      }
    }
  }

  for (auto& [layer, qp] : queries) {
    const std::string base = "layers." + std::to_string(layer) + ".q";
    if (!qp.first) return FormatError("tensor \"" + base + "_positions\" has no matching \"" + base + "\"");
    if (!qp.second) return FormatError("tensor \"" + base + "\" needs \"" + base + "_positions\" (the token index of each query row)");
    MQKV_ASSIGN_OR_RETURN(KvTensor t, QueryFromArrays(layer, *qp.first, *qp.second));
    set.tensors.push_back(std::move(t));
    names_of.push_back(qp.first);
  }
  for (size_t i = 0; i < set.tensors.size(); ++i) by_name[names_of[i]->name] = &set.tensors[i];

  Stated stated;
  MQKV_RETURN_IF_ERROR(ApplyMetadata(meta, by_name, origin, &set, &stated));

  std::stable_sort(set.tensors.begin(), set.tensors.end(), [](const KvTensor& a, const KvTensor& b) {
    return a.desc.layer != b.desc.layer ? a.desc.layer < b.desc.layer : a.desc.kind < b.desc.kind;
  });

  MQKV_RETURN_IF_ERROR(CheckRows(set));
  DeriveModel(stated, &set);
  return set;
}

bool AllFiniteF16(const uint16_t* v, uint64_t n) {
  // A value's exponent field plus 0x0400 carries into bit 15 exactly when the field is all ones.
  // Fixed-length inner runs: GCC's -O2 vectorizes those (a loop of unknown length it does not).
  uint16_t bad = 0;
  uint64_t i = 0;
  for (; i + 256 <= n; i += 256)
    for (uint32_t j = 0; j < 256; ++j) bad |= static_cast<uint16_t>((v[i + j] & 0x7C00u) + 0x0400u);
  for (; i < n; ++i) bad |= static_cast<uint16_t>((v[i] & 0x7C00u) + 0x0400u);
  return (bad & 0x8000u) == 0;
}

void ArrayOut::Encode(uint8_t* dst) const {
  switch (type) {
    case ElemType::kF32: std::memcpy(dst, f32, count * 4); break;
    case ElemType::kI32: std::memcpy(dst, i32, count * 4); break;
    case ElemType::kF16:
      if (codec::simd::F32ToF16(f32, count, dst)) break;  // bit-identical; else the reference decides
      for (uint64_t i = 0; i < count; ++i) {
        const uint16_t h = f32_to_f16(f32[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      break;
    case ElemType::kBF16:
      for (uint64_t i = 0; i < count; ++i) {
        const uint16_t h = f32_to_bf16(f32[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      break;
    case ElemType::kF64:
      for (uint64_t i = 0; i < count; ++i) {
        const double d = f32[i];
        std::memcpy(dst + 8 * i, &d, 8);
      }
      break;
    case ElemType::kI64:
      for (uint64_t i = 0; i < count; ++i) {
        const int64_t d = i32[i];
        std::memcpy(dst + 8 * i, &d, 8);
      }
      break;
  }
}

StringMap ModelToMap(const ModelInfo& m) {
  StringMap o = {
      {"mqkv.interop", kInteropVersion},
      {"mqkv.architecture", m.architecture},
      {"mqkv.n_layer", std::to_string(m.n_layer)},
      {"mqkv.n_head", std::to_string(m.n_head)},
      {"mqkv.n_head_kv", std::to_string(m.n_head_kv)},
      {"mqkv.head_dim_k", std::to_string(m.head_dim_k)},
      {"mqkv.head_dim_v", std::to_string(m.head_dim_v)},
      {"mqkv.rope_type", m.rope_type},
      {"mqkv.rope_base", FloatText(m.rope_base)},
      {"mqkv.k_rope", KRopeName(m.k_rope)},
      {"mqkv.source_engine", m.source_engine},
      {"mqkv.source_engine_version", m.source_engine_version},
      {"mqkv.source_format", m.source_format},
  };
  for (const auto& [k, v] : m.metadata) o.emplace_back(std::string(kFreePrefix) + k, v);
  return o;
}

Result<ElemType> OutputType(const KvTensor& t, bool allow_bf16, std::string_view dtype) {
  const std::string want = dtype.empty() ? t.desc.source_dtype : std::string(dtype);
  if (!dtype.empty() && dtype != "f16" && dtype != "bf16" && dtype != "f32")
    return InvalidArgument("output dtype \"" + std::string(dtype) + "\" (f16, bf16 or f32)");
  ElemType type = ElemType::kF32;
  if (want == "f16") type = ElemType::kF16;
  else if (want == "bf16" && allow_bf16) type = ElemType::kBF16;
  else if (want == "bf16" && !dtype.empty()) return Unsupported("npy and npz have no bfloat16 type (write safetensors, or --dtype f16/f32)");
  if (!t.lazy()) MQKV_RETURN_IF_ERROR(CheckRange(t, t.data, type));  // a lazy tensor: checked when written
  return type;
}

Status CheckRange(const KvTensor& t, const std::vector<float>& rows, ElemType type) {
  // Exact values (every lossless round trip) change no bit; others round to nearest even, but
  // never overflow to infinity behind the caller's back.
  const float max = 65504.0f;
  if (type == ElemType::kF16 && t.exact_in != "f16" && !ExactF16(rows))
    for (float x : rows)
      if (std::isfinite(x) && std::fabs(x) > max)
        return InvalidArgument("layer " + std::to_string(t.desc.layer) + " " + KindName(t.desc.kind) + " holds " + std::to_string(x) +
                               ", beyond f16's range (65504): write --dtype f32");
  return Status::OK();
}

Result<WritePlan> Plan(const KvSet& set, bool allow_bf16, std::string_view dtype) {
  WritePlan plan;
  plan.metadata = ModelToMap(set.model);
  const ModelInfo& m = set.model;
  if (!m.positions.empty() && m.positions.size() != m.tokens.size())
    return InvalidArgument("the set has " + std::to_string(m.positions.size()) + " positions for " + std::to_string(m.tokens.size()) + " tokens");
  if (!m.seq_ids.empty() && m.seq_ids.size() != m.tokens.size())
    return InvalidArgument("the set has " + std::to_string(m.seq_ids.size()) + " sequence ids for " + std::to_string(m.tokens.size()) + " tokens");
  auto ints = [&](const char* name, const std::vector<int32_t>& v) {
    if (v.empty()) return;
    plan.arrays.push_back(ArrayOut{name, ElemType::kI32, {v.size()}, nullptr, v.data(), v.size()});
  };
  ints("tokens", m.tokens);
  ints("positions", m.positions);
  ints("seq_ids", m.seq_ids);
  for (size_t i = 0; i < set.tensors.size(); ++i) {
    const KvTensor& t = set.tensors[i];
    for (size_t j = 0; j < i; ++j)
      if (set.tensors[j].desc.layer == t.desc.layer && set.tensors[j].desc.kind == t.desc.kind)
        return InvalidArgument("the set holds layer " + std::to_string(t.desc.layer) + " " + KindName(t.desc.kind) + " twice");
    const std::string name = "layers." + std::to_string(t.desc.layer) + "." + LeafName(t.desc.kind);
    const uint64_t n = uint64_t(t.desc.n_tokens) * t.desc.n_heads * t.desc.head_dim;
    if (!t.lazy() && t.data.size() != n)
      return InvalidArgument("tensor " + name + " holds " + std::to_string(t.data.size()) + " values for shape [" + std::to_string(t.desc.n_tokens) +
                             ", " + std::to_string(t.desc.n_heads) + ", " + std::to_string(t.desc.head_dim) + "]");
    MQKV_ASSIGN_OR_RETURN(const ElemType type, OutputType(t, allow_bf16, dtype));
    plan.arrays.push_back(ArrayOut{name, type, {t.desc.n_tokens, t.desc.n_heads, t.desc.head_dim},
                                   t.lazy() ? nullptr : t.data.data(), nullptr, n, &t});
    if (t.desc.source_dtype != ElemName(type)) plan.metadata.emplace_back(std::string(kSourceDtypePrefix) + name, t.desc.source_dtype);
    if (t.desc.kind == Kind::kQ) {
      if (t.desc.positions.size() != t.desc.n_tokens)
        return InvalidArgument("query tensor " + name + " has " + std::to_string(t.desc.positions.size()) + " positions for " +
                               std::to_string(t.desc.n_tokens) + " rows");
      plan.arrays.push_back(ArrayOut{name + "_positions", ElemType::kI32, {t.desc.n_tokens}, nullptr, t.desc.positions.data(), t.desc.n_tokens});
    }
  }
  return plan;
}

}  // namespace mqkv::adapters::interop
