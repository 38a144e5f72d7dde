// safetensors <-> KvSet (spec/INTEROP.md, "safetensors"). The reader applies huggingface
// safetensors' checks: header length capped, header well-formed JSON, tensors contiguous from
// offset 0 without gaps or overlaps, shape x dtype size overflow-checked and equal to the byte
// range, last offset equal to the end of the file.
#include <algorithm>
#include <cstring>
#include <thread>

#include "io/io.h"
#include "adapters.h"
#include "interop.h"
#include "codec/simd.h"
#include "json.h"
#include "util/parallel.h"

namespace mqkv::adapters {
namespace {

using interop::ElemType;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // as huggingface safetensors (MAX_HEADER_SIZE)

struct DtypeName {
  const char* name;
  ElemType type;
};
constexpr DtypeName kDtypes[] = {{"F64", ElemType::kF64}, {"F32", ElemType::kF32}, {"F16", ElemType::kF16},
                                 {"BF16", ElemType::kBF16}, {"I32", ElemType::kI32}, {"I64", ElemType::kI64}};
// Valid safetensors dtypes that cannot hold a KV snapshot here (rejected as unsupported).
constexpr const char* kOtherDtypes[] = {"BOOL", "U8", "I8", "U16", "I16", "U32", "U64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"};

const char* DtypeString(ElemType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  return "?";
}

bool Sniff(const uint8_t* h, size_t n) {
  if (n < 9) return false;
  uint64_t len;
  std::memcpy(&len, h, 8);
  return len >= 2 && len <= kMaxHeaderBytes && h[8] == '{';
}

struct Entry {
  interop::ArrayView view;
  uint64_t begin = 0, end = 0;
};

Status ParseTensorEntry(const std::string& name, const json::Value& v, Entry* e) {
  const std::string where = "header entry \"" + name + "\"";
  if (v.type != json::Value::Type::kObject) return FormatError(where + " is not an object");
  for (const auto& [k, _] : v.members)
    if (k != "dtype" && k != "shape" && k != "data_offsets") return FormatError(where + " has unknown field \"" + k + "\"");
  const json::Value* dtype = v.Find("dtype");
  const json::Value* shape = v.Find("shape");
  const json::Value* offs = v.Find("data_offsets");
  if (!dtype || !shape || !offs) return FormatError(where + " needs dtype, shape and data_offsets");
  if (dtype->type != json::Value::Type::kString) return FormatError(where + ": dtype is not a string");
  bool found = false;
  for (const auto& d : kDtypes)
    if (dtype->text == d.name) e->view.type = d.type, found = true;
  if (!found) {
    for (const char* o : kOtherDtypes)
      if (dtype->text == o) return Unsupported(where + ": dtype " + dtype->text + " cannot hold KV values (F32, F16, BF16, F64; I32/I64 for ids)");
    return FormatError(where + ": unknown dtype \"" + dtype->text + "\"");
  }
  if (shape->type != json::Value::Type::kArray) return FormatError(where + ": shape is not an array");
  for (const json::Value& d : shape->items) {
    uint64_t x;
    if (!d.AsUint64(&x)) return FormatError(where + ": shape entries must be non-negative integers");
    e->view.shape.push_back(x);
  }
  if (offs->type != json::Value::Type::kArray || offs->items.size() != 2 || !offs->items[0].AsUint64(&e->begin) ||
      !offs->items[1].AsUint64(&e->end))
    return FormatError(where + ": data_offsets must be [begin, end] integers");
  e->view.name = name;
  return Status::OK();
}

Result<KvSet> Parse(std::shared_ptr<const io::WholeFile> f, bool lazy) {
  const uint8_t* d = f->data();
  const uint64_t size = f->size();
  if (size < 8) return FormatErrorAt(0, "file is " + std::to_string(size) + " bytes, too small for a safetensors header length");
  uint64_t hlen;
  std::memcpy(&hlen, d, 8);
  if (hlen > kMaxHeaderBytes)
    return FormatErrorAt(0, "header length " + std::to_string(hlen) + " exceeds the " + std::to_string(kMaxHeaderBytes) + "-byte cap");
  if (hlen > size - 8)
    return FormatErrorAt(0, "header length " + std::to_string(hlen) + " runs past the end of the " + std::to_string(size) + "-byte file");
  const std::string_view text(reinterpret_cast<const char*>(d + 8), hlen);
  if (text.empty() || text[0] != '{') return FormatErrorAt(8, "header does not start with '{' (not a safetensors file?)");
  auto parsed = json::Parse(text);
  if (!parsed.ok()) return FormatErrorAt(8 + parsed.status().offset().value_or(0), "header: " + parsed.status().message());
  const json::Value& root = *parsed;
  if (root.type != json::Value::Type::kObject) return FormatErrorAt(8, "header is not a JSON object");

  interop::StringMap meta;
  std::vector<Entry> entries;
  for (const auto& [name, v] : root.members) {
    if (name == "__metadata__") {
      if (v.type != json::Value::Type::kObject) return FormatErrorAt(8, "__metadata__ is not an object of strings");
      for (const auto& [k, s] : v.members) {
        if (s.type != json::Value::Type::kString) return FormatErrorAt(8, "__metadata__ value of \"" + k + "\" is not a string");
        meta.emplace_back(k, s.text);
      }
      continue;
    }
    Entry e;
    MQKV_RETURN_IF_ERROR(ParseTensorEntry(name, v, &e));
    entries.push_back(std::move(e));
  }

  const uint64_t data_start = 8 + hlen, data_bytes = size - data_start;
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t expect = 0;
  std::vector<interop::ArrayView> arrays;
  for (Entry& e : entries) {
    const std::string where = "tensor \"" + e.view.name + "\"";
    if (e.begin != expect || e.end < e.begin)
      return FormatError(where + ": data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "] " +
                         (e.begin < expect ? "overlap the previous tensor" : e.end < e.begin ? "are reversed" : "leave a gap after byte " + std::to_string(expect)));
    uint64_t need;
    if (!interop::ByteSize(e.view.shape, interop::ElemSize(e.view.type), &need))
      return FormatError(where + ": shape x dtype size overflows 64 bits");
    if (need != e.end - e.begin)
      return FormatError(where + ": shape and dtype need " + std::to_string(need) + " bytes, data_offsets give " + std::to_string(e.end - e.begin));
    if (e.end > data_bytes)
      return FormatErrorAt(data_start + e.begin, where + ": data_offsets end " + std::to_string(e.end) + " is past the " + std::to_string(data_bytes) +
                                                     " data bytes of the file");
    expect = e.end;
    e.view.data = d + data_start + e.begin;
    arrays.push_back(e.view);
  }
  if (expect != data_bytes)
    return FormatErrorAt(data_start + expect, "tensors end at data byte " + std::to_string(expect) + " but the file holds " +
                                                  std::to_string(data_bytes) + " data bytes (trailing bytes)");
  std::function<void(const uint8_t*, uint64_t)> release;
  if (lazy) release = [file = f.get()](const uint8_t* p, uint64_t n) { file->Release(p, n); };
  MQKV_ASSIGN_OR_RETURN(KvSet set, interop::Assemble(arrays, meta, "safetensors", lazy, std::move(release)));
  if (lazy) set.backing = std::move(f);
  return set;
}

Result<KvSet> Read(const std::string& path, FileFormat) {
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<io::WholeFile> f, io::WholeFile::Open(path));
  return Parse(std::move(f), false);
}

// f16 rows decoded and written per range of about this many bytes (in a core's L2 cache).
constexpr uint64_t kChunkBytes = 256 << 10;

Status Write(const KvSet& set, const std::string& path, FileFormat, const WriteOptions& opts) {
  MQKV_ASSIGN_OR_RETURN(interop::WritePlan plan, interop::Plan(set, /*allow_bf16=*/true, opts.dtype));
  std::string h = "{\"__metadata__\":{";
  for (size_t i = 0; i < plan.metadata.size(); ++i) {
    const auto& [k, v] = plan.metadata[i];
    if (!json::ValidUtf8(k) || !json::ValidUtf8(v))
      return InvalidArgument("metadata \"" + k + "\" is not valid UTF-8, which a safetensors (JSON) header cannot hold");
    if (i) h += ',';
    h += json::Quote(k);
    h += ':';
    h += json::Quote(v);
  }
  h += "}";
  uint64_t off = 0;
  for (const interop::ArrayOut& a : plan.arrays) {
    h += ',';
    h += json::Quote(a.name);
    h += ":{\"dtype\":\"";
    h += DtypeString(a.type);
    h += "\",\"shape\":[";
    for (size_t i = 0; i < a.shape.size(); ++i) {
      if (i) h += ',';
      h += std::to_string(a.shape[i]);
    }
    h += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + a.bytes()) + "]}";
    off += a.bytes();
  }
  h += "}";
  h.append((8 - (8 + h.size()) % 8) % 8, ' ');  // data starts 8-byte aligned, as the reference writer does
  if (h.size() > kMaxHeaderBytes) return InvalidArgument("safetensors header would be " + std::to_string(h.size()) + " bytes, over the 100 MB cap");

  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<io::OutputFile> out, io::CreateOutput(path, opts.writer.fsync));
  const uint64_t hlen = h.size();
  MQKV_RETURN_IF_ERROR(out->Write(&hlen, 8));
  MQKV_RETURN_IF_ERROR(out->Write(h.data(), h.size()));
  // Each array is produced by one thread (a lazy tensor loaded, then encoded to its element
  // type) into that thread's buffer, so at most `threads` arrays are held at once.
  const unsigned threads = opts.threads ? opts.threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::vector<uint8_t>> enc(threads);
  auto produce = [&](size_t i, std::vector<uint8_t>& buf, bool skip_f16 = false) -> Result<const void*> {
    interop::ArrayOut a = plan.arrays[i];
    std::vector<float> hold;
    if (a.source && a.source->lazy()) {
      if (a.type == ElemType::kF16 && a.source->load_f16 && !skip_f16) {  // decoded as f16: no fp32 rows, no conversion
        buf.resize(a.bytes());
        MQKV_ASSIGN_OR_RETURN(bool served, a.source->load_f16(0, a.source->desc.n_tokens, reinterpret_cast<uint16_t*>(buf.data())));
        if (served) return static_cast<const void*>(buf.data());
      }
      MQKV_ASSIGN_OR_RETURN(const std::vector<float>* rows, RowsOf(*a.source, &hold));
      a.f32 = rows->data();
      buf.resize(a.bytes());
      // To f16 with SIMD when every value comes out finite (so none is beyond f16's range);
      // otherwise checked (an error names the tensor) and converted by the reference.
      if (a.type == ElemType::kF16 && codec::simd::F32ToF16(a.f32, a.count, buf.data())) return static_cast<const void*>(buf.data());
      MQKV_RETURN_IF_ERROR(interop::CheckRange(*a.source, *rows, a.type));
    } else if (a.type == ElemType::kF32 || a.type == ElemType::kI32) {
      return a.f32 ? static_cast<const void*>(a.f32) : static_cast<const void*>(a.i32);  // written straight from memory
    }
    buf.resize(a.bytes());
    a.Encode(buf.data());
    return static_cast<const void*>(buf.data());
  };
  // A local file (or memory) takes the data section as one reserved range that every thread
  // writes its arrays into at their offsets (pwrite): the kernel's copy into the page cache, most
  // of the time of a decode into tmpfs, then runs on every thread too. Otherwise (an S3 upload)
  // arrays are produced `threads` at a time and written in file order.
  std::vector<uint64_t> offsets(plan.arrays.size() + 1, 0);
  for (size_t i = 0; i < plan.arrays.size(); ++i) offsets[i + 1] = offsets[i] + plan.arrays[i].bytes();
  const uint64_t data_start = out->position();
  MQKV_ASSIGN_OR_RETURN(bool reserved, out->Reserve(offsets.back()));
  if (reserved) {
    MQKV_RETURN_IF_ERROR(util::ParallelFor(plan.arrays.size(), threads, [&](size_t i, unsigned w) -> Status {
      const interop::ArrayOut& a = plan.arrays[i];
      // An f16 decode goes in row ranges of about kChunkBytes, each written while it is still in
      // the core's cache (the kernel's copy from a cache-resident buffer is the fast one); if a
      // range does not come out finite, the whole array is redone the fp32 way over the same bytes.
      if (a.type == ElemType::kF16 && a.source && a.source->lazy() && a.source->load_f16 && a.source->load_f16_ranges) {
        const uint32_t n = a.source->desc.n_tokens;
        const uint64_t row_bytes = n ? a.bytes() / n : 0;
        const uint32_t step = static_cast<uint32_t>(std::max<uint64_t>(1, kChunkBytes / std::max<uint64_t>(row_bytes, 1)));
        enc[w].resize(std::min<uint64_t>(n, step) * row_bytes);
        bool served = true;
        for (uint32_t r0 = 0; r0 < n && served; r0 += std::min(step, n - r0)) {
          const uint32_t r1 = r0 + std::min(step, n - r0);
          MQKV_ASSIGN_OR_RETURN(served, a.source->load_f16(r0, r1, reinterpret_cast<uint16_t*>(enc[w].data())));
          if (served) MQKV_RETURN_IF_ERROR(out->WriteReserved(data_start + offsets[i] + r0 * row_bytes, enc[w].data(), (r1 - r0) * row_bytes));
        }
        if (served) return Status::OK();
        MQKV_ASSIGN_OR_RETURN(const void* p, produce(i, enc[w], /*skip_f16=*/true));
        return out->WriteReserved(data_start + offsets[i], p, a.bytes());
      }
      MQKV_ASSIGN_OR_RETURN(const void* p, produce(i, enc[w]));
      return out->WriteReserved(data_start + offsets[i], p, a.bytes());
    }));
  } else {
    std::vector<const void*> ready(threads);
    for (size_t w0 = 0; w0 < plan.arrays.size(); w0 += threads) {
      const size_t k = std::min<size_t>(threads, plan.arrays.size() - w0);
      MQKV_RETURN_IF_ERROR(util::ParallelFor(k, unsigned(k), [&](size_t j, unsigned) -> Status {
        MQKV_ASSIGN_OR_RETURN(ready[j], produce(w0 + j, enc[j]));
        return Status::OK();
      }));
      for (size_t j = 0; j < k; ++j) MQKV_RETURN_IF_ERROR(out->Write(ready[j], plan.arrays[w0 + j].bytes()));
    }
  }
  return out->Commit();
}

}  // namespace

Result<KvSet> ReadSafetensorsLazy(const std::string& path) {
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<io::WholeFile> f, io::WholeFile::Open(path));
  return Parse(std::move(f), true);
}

const Adapter& SafetensorsAdapter() {
  static const Adapter a{FileFormat::kSafetensors, Sniff, Read, Write};
  return a;
}

}  // namespace mqkv::adapters
