// npy and npz <-> KvSet (spec/INTEROP.md, "npy" and "npz"); the zip container of npz is zip.h.

#include <algorithm>
#include <cstring>
#include <map>

#include "io/io.h"
#include "adapters.h"
#include "interop.h"
#include "json.h"
#include "zip.h"
#include "mqkv/numeric.h"

namespace mqkv::adapters {
namespace {

using interop::ElemType;

constexpr uint8_t kNpyMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
constexpr const char* kMetadataMember = "__metadata__";

template <typename T>
T Get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// ---------------------------------------------------------------------------------------------
// npy

struct NpyArray {
  bool is_unicode = false;  // '<U{width}' (the npz metadata array)
  uint64_t unicode_width = 0;
  ElemType type = ElemType::kF32;
  bool big_endian = false;
  std::vector<uint64_t> shape;
  const uint8_t* data = nullptr;
  uint64_t data_bytes = 0;
};

// The header is a Python dict literal; this parses the subset numpy writes:
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } plus spaces and a final newline.
class HeaderParser {
 public:
  HeaderParser(std::string_view t, uint64_t base) : t_(t), base_(base) {}

  Status Parse(std::string* descr, bool* fortran, std::vector<uint64_t>* shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    Ws();
    if (!Eat('{')) return Err("header is not a Python dict literal");
    for (;;) {
      Ws();
      if (Eat('}')) break;
      std::string key;
      MQKV_RETURN_IF_ERROR(Str(&key));
      Ws();
      if (!Eat(':')) return Err("expected ':'");
      Ws();
      if (key == "descr") {
        if (have_descr) return Err("duplicate key 'descr'");
        have_descr = true;
        MQKV_RETURN_IF_ERROR(Str(descr));
      } else if (key == "fortran_order") {
        if (have_fortran) return Err("duplicate key 'fortran_order'");
        have_fortran = true;
        if (Word("True")) *fortran = true;
        else if (Word("False")) *fortran = false;
        else return Err("fortran_order must be True or False");
      } else if (key == "shape") {
        if (have_shape) return Err("duplicate key 'shape'");
        have_shape = true;
        MQKV_RETURN_IF_ERROR(Tuple(shape));
      } else {
        return Err("unexpected key '" + key + "' (numpy headers hold descr, fortran_order and shape)");
      }
      Ws();
      if (Eat('}')) break;
      if (!Eat(',')) return Err("expected ',' or '}'");
    }
    Ws();
    if (p_ != t_.size()) return Err("unexpected bytes after the header dict");
    if (!have_descr || !have_fortran || !have_shape) return Err("header lacks one of descr, fortran_order, shape");
    return Status::OK();
  }

 private:
  Status Err(const std::string& m) const { return FormatErrorAt(base_ + p_, "npy header: " + m); }
  void Ws() {
    while (p_ < t_.size() && (t_[p_] == ' ' || t_[p_] == '\n' || t_[p_] == '\t' || t_[p_] == '\r')) ++p_;
  }
  bool Eat(char c) {
    if (p_ < t_.size() && t_[p_] == c) return ++p_, true;
    return false;
  }
  bool Word(std::string_view w) {
    if (t_.substr(p_, w.size()) != w) return false;
    p_ += w.size();
    return true;
  }
  Status Str(std::string* out) {
    if (p_ >= t_.size() || (t_[p_] != '\'' && t_[p_] != '"')) return Err("expected a quoted string");
    const char q = t_[p_++];
    const size_t start = p_;
    while (p_ < t_.size() && t_[p_] != q) {
      if (t_[p_] == '\\' || static_cast<unsigned char>(t_[p_]) < 0x20) return Err("unsupported character in string");
      ++p_;
    }
    if (p_ >= t_.size()) return Err("unterminated string");
    *out = std::string(t_.substr(start, p_ - start));
    ++p_;
    return Status::OK();
  }
  Status Tuple(std::vector<uint64_t>* out) {
    if (!Eat('(')) return Err("shape must be a tuple");
    for (;;) {
      Ws();
      if (Eat(')')) return Status::OK();
      if (p_ >= t_.size() || t_[p_] < '0' || t_[p_] > '9') return Err("shape entries must be non-negative integers");
      uint64_t x = 0;
      while (p_ < t_.size() && t_[p_] >= '0' && t_[p_] <= '9') {
        if (__builtin_mul_overflow(x, 10u, &x) || __builtin_add_overflow(x, uint64_t(t_[p_] - '0'), &x)) return Err("shape entry overflows 64 bits");
        ++p_;
      }
      out->push_back(x);
      if (out->size() > 32) return Err("more than 32 dimensions");
      Ws();
      if (Eat(')')) return Status::OK();
      if (!Eat(',')) return Err("expected ',' or ')' in shape");
    }
  }

  std::string_view t_;
  uint64_t base_;
  size_t p_ = 0;
};

Status ParseDescr(const std::string& descr, NpyArray* a, uint64_t* itemsize) {
  if (descr.size() < 3) return Unsupported("npy dtype '" + descr + "' is not supported");
  const char order = descr[0];
  const std::string rest = descr.substr(1);
  if (order != '<' && order != '>' && order != '=') return Unsupported("npy dtype '" + descr + "' is not supported");
  a->big_endian = order == '>';
  static const std::pair<const char*, ElemType> kTypes[] = {
      {"f8", ElemType::kF64}, {"f4", ElemType::kF32}, {"f2", ElemType::kF16}, {"i4", ElemType::kI32}, {"i8", ElemType::kI64}};
  for (const auto& [n, t] : kTypes)
    if (rest == n) {
      a->type = t;
      *itemsize = interop::ElemSize(t);
      return Status::OK();
    }
  if (rest[0] == 'U' && rest.size() <= 8 && order != '>') {
    uint64_t w = 0;
    for (size_t i = 1; i < rest.size(); ++i) {
      if (rest[i] < '0' || rest[i] > '9') return Unsupported("npy dtype '" + descr + "' is not supported");
      w = w * 10 + uint64_t(rest[i] - '0');
    }
    if (w == 0) return Unsupported("npy dtype '" + descr + "' is not supported");
    a->is_unicode = true;
    a->unicode_width = w;
    *itemsize = 4 * w;
    return Status::OK();
  }
  return Unsupported("npy dtype '" + descr + "' is not supported (little- or big-endian f2, f4, f8, i4, i8)");
}

// Parses one .npy image of n bytes. Offsets in errors are relative to p.
Result<NpyArray> ParseNpy(const uint8_t* p, uint64_t n) {
  if (n < 10 || std::memcmp(p, kNpyMagic, 6) != 0) return FormatErrorAt(0, "missing the npy magic \"\\x93NUMPY\"");
  const uint8_t major = p[6], minor = p[7];
  if (major < 1 || major > 3 || minor != 0)
    return Unsupported("npy format version " + std::to_string(major) + "." + std::to_string(minor) + " (this build reads 1.0, 2.0, 3.0)");
  uint64_t hlen, hstart;
  if (major == 1) {
    uint16_t h16;
    std::memcpy(&h16, p + 8, 2);
    hlen = h16, hstart = 10;
  } else {
    if (n < 12) return FormatErrorAt(0, "npy file too short for its header length");
    uint32_t h32;
    std::memcpy(&h32, p + 8, 4);
    hlen = h32, hstart = 12;
  }
  if (hlen > n - hstart)
    return FormatErrorAt(8, "npy header length " + std::to_string(hlen) + " runs past the end (" + std::to_string(n) + " bytes)");
  const std::string_view text(reinterpret_cast<const char*>(p + hstart), hlen);
  std::string descr;
  bool fortran = false;
  NpyArray a;
  MQKV_RETURN_IF_ERROR(HeaderParser(text, hstart).Parse(&descr, &fortran, &a.shape));
  uint64_t itemsize = 0;
  MQKV_RETURN_IF_ERROR(ParseDescr(descr, &a, &itemsize));
  if (fortran && a.shape.size() > 1)
    return Unsupported("fortran_order True (column-major) arrays are not supported; save a C-order array (numpy.ascontiguousarray)");
  uint64_t bytes;
  if (!interop::ByteSize(a.shape, itemsize, &bytes)) return FormatErrorAt(hstart, "npy shape x item size overflows 64 bits");
  const uint64_t data_at = hstart + hlen;
  if (bytes != n - data_at)
    return FormatErrorAt(data_at, "npy shape and dtype need " + std::to_string(bytes) + " data bytes, the file holds " + std::to_string(n - data_at));
  a.data = p + data_at;
  a.data_bytes = bytes;
  return a;
}

// The header text numpy would write: padded with spaces so magic + length + header is a
// multiple of 64, ending in '\n'. Version 1.0 unless the header needs more than 65535 bytes.
std::string NpyHeader(const char* descr, const std::vector<uint64_t>& shape) {
  std::string d = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) d += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? ", " : "");
  if (shape.size() == 1) d.pop_back();  // "(5,)"
  d += "), }";
  const bool v2 = d.size() + 1 + 10 > 0xFFFF;
  const size_t pre = v2 ? 12 : 10;
  d.append((64 - (pre + d.size() + 1) % 64) % 64, ' ');
  d += '\n';
  std::string out(reinterpret_cast<const char*>(kNpyMagic), 6);
  out += char(v2 ? 2 : 1);
  out += char(0);
  if (v2) {
    const uint32_t l = static_cast<uint32_t>(d.size());
    out.append(reinterpret_cast<const char*>(&l), 4);
  } else {
    const uint16_t l = static_cast<uint16_t>(d.size());
    out.append(reinterpret_cast<const char*>(&l), 2);
  }
  return out + d;
}

const char* NpyDescr(ElemType t) {
  switch (t) {
    case ElemType::kF64: return "<f8";
    case ElemType::kF32: return "<f4";
    case ElemType::kF16: return "<f2";
    case ElemType::kI32: return "<i4";
    case ElemType::kI64: return "<i8";
    case ElemType::kBF16: break;
  }
  return "<f4";
}

bool SniffNpy(const uint8_t* h, size_t n) { return n >= 6 && std::memcmp(h, kNpyMagic, 6) == 0; }

Result<interop::ArrayView> NumericView(const NpyArray& a, std::string name) {
  if (a.is_unicode) return FormatError("array \"" + name + "\" holds strings, not numbers");
  interop::ArrayView v;
  v.name = std::move(name);
  v.type = a.type;
  v.shape = a.shape;
  v.data = a.data;
  v.big_endian = a.big_endian;
  return v;
}

// A lazy read's release of converted bytes: a mapped file drops their pages (ByteSource::Release);
// bytes outside the mapping (an inflated npz member) are left alone.
std::function<void(const uint8_t*, uint64_t)> ReleaseIn(const io::WholeFile* f) {
  return [f](const uint8_t* p, uint64_t n) { f->Release(p, n); };
}

Result<KvSet> ParseNpyFile(std::unique_ptr<io::WholeFile> f, bool lazy) {
  MQKV_ASSIGN_OR_RETURN(NpyArray a, ParseNpy(f->data(), f->size()));
  if (a.is_unicode || !interop::IsFloat(a.type)) return FormatError("npy array must hold floating-point K/V values");
  const auto& s = a.shape;
  if (s.size() != 5 || s[1] != 2)
    return FormatError("npy array must have shape [n_layers, 2 (k, v), n_tokens, n_kv_heads, head_dim]; it has " + std::to_string(s.size()) +
                       " dimensions" + (s.size() == 5 ? " and dimension 1 = " + std::to_string(s[1]) : ""));
  // A zero-sized axis lets any layer count fit in the file: bound it explicitly.
  if (s[0] > 65536) return FormatError("npy array claims " + std::to_string(s[0]) + " layers (at most 65536)");
  const uint64_t per = s[2] * s[3] * s[4] * interop::ElemSize(a.type);  // bounded: the file holds it
  std::vector<interop::ArrayView> views;
  for (uint64_t l = 0; l < s[0]; ++l)
    for (int kv = 0; kv < 2; ++kv) {
      interop::ArrayView v;
      v.name = "layers." + std::to_string(l) + (kv ? ".v" : ".k");
      v.type = a.type;
      v.shape = {s[2], s[3], s[4]};
      v.data = a.data + (l * 2 + kv) * per;
      v.big_endian = a.big_endian;
      views.push_back(std::move(v));
    }
  if (!lazy) return interop::Assemble(views, {}, "npy");
  MQKV_ASSIGN_OR_RETURN(KvSet set, interop::Assemble(views, {}, "npy", true, ReleaseIn(f.get())));
  set.backing = std::move(f);
  return set;
}

Result<KvSet> ReadNpy(const std::string& path, FileFormat) {
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<io::WholeFile> f, io::WholeFile::Open(path));
  return ParseNpyFile(std::move(f), false);
}

Status WriteNpy(const KvSet& set, const std::string& path, FileFormat, const WriteOptions& opts) {
  std::map<std::pair<uint32_t, int>, const KvTensor*> kv;
  for (const KvTensor& t : set.tensors) {
    if (t.desc.kind == Kind::kQ)
      return InvalidArgument("a .npy file holds K and V only and this set has query tensors; write npz or safetensors to keep them");
    if (!kv.emplace(std::make_pair(t.desc.layer, int(t.desc.kind)), &t).second)
      return InvalidArgument("the set holds layer " + std::to_string(t.desc.layer) + " " + KindName(t.desc.kind) + " twice");
  }
  if (kv.empty()) return InvalidArgument("the set has no K/V tensors to write as npy");
  const uint32_t layers = kv.rbegin()->first.first + 1;
  const KvTensor* first = kv.begin()->second;
  for (uint32_t l = 0; l < layers; ++l)
    for (int k = 0; k < 2; ++k) {
      auto it = kv.find({l, k});
      if (it == kv.end())
        return InvalidArgument("a .npy file holds every layer's K and V in one array, but layer " + std::to_string(l) + " " +
                               KindName(Kind(k)) + " is missing");
      const TensorDesc& d = it->second->desc;
      if (d.n_tokens != first->desc.n_tokens || d.n_heads != first->desc.n_heads || d.head_dim != first->desc.head_dim)
        return InvalidArgument("a .npy file needs equal K/V shapes in every layer; layer " + std::to_string(l) + " " + KindName(d.kind) +
                               " is [" + std::to_string(d.n_tokens) + ", " + std::to_string(d.n_heads) + ", " + std::to_string(d.head_dim) +
                               "] (write npz or safetensors)");
    }
  // One element type for the whole array: --dtype, else f16 when every tensor's source dtype is
  // f16 (npy has no bf16: bf16 sources are written f4), else f4 (spec/INTEROP.md section 1.1).
  ElemType type = ElemType::kF32;
  for (const auto& [key, t] : kv) {
    MQKV_ASSIGN_OR_RETURN(const ElemType ti, interop::OutputType(*t, /*allow_bf16=*/false, opts.dtype));
    if (key == kv.begin()->first) type = ti;
    else if (ti != type) type = ElemType::kF32;
  }
  const std::vector<uint64_t> shape = {layers, 2, first->desc.n_tokens, first->desc.n_heads, first->desc.head_dim};
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<io::OutputFile> out, io::CreateOutput(path, opts.writer.fsync));
  const std::string header = NpyHeader(NpyDescr(type), shape);
  MQKV_RETURN_IF_ERROR(out->Write(header.data(), header.size()));
  std::vector<uint8_t> buf;
  std::vector<float> hold;
  for (const auto& [key, t] : kv) {
    // A lazy tensor is loaded here, one at a time (and range-checked, as OutputType does for the rest).
    MQKV_ASSIGN_OR_RETURN(const std::vector<float>* rows, RowsOf(*t, &hold));
    if (t->lazy()) MQKV_RETURN_IF_ERROR(interop::CheckRange(*t, *rows, type));
    interop::ArrayOut a{"", type, {}, rows->data(), nullptr, rows->size()};
    if (type == ElemType::kF32) {
      MQKV_RETURN_IF_ERROR(out->Write(rows->data(), a.bytes()));
      continue;
    }
    buf.resize(a.bytes());
    a.Encode(buf.data());
    MQKV_RETURN_IF_ERROR(out->Write(buf.data(), buf.size()));
  }
  return out->Commit();
}

// ---------------------------------------------------------------------------------------------
// npz

bool SniffNpz(const uint8_t* h, size_t n) { return n >= 4 && h[0] == 'P' && h[1] == 'K' && h[2] == 3 && h[3] == 4; }

// UTF-32LE code units (one '<U{width}' element, NUL-padded) -> UTF-8.
Result<std::string> Utf32ToUtf8(const uint8_t* p, uint64_t width) {
  std::string o;
  uint64_t len = width;
  while (len > 0 && Get<uint32_t>(p + 4 * (len - 1)) == 0) --len;
  for (uint64_t i = 0; i < len; ++i) {
    const uint32_t cp = Get<uint32_t>(p + 4 * i);
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return FormatError("metadata string holds invalid code point " + std::to_string(cp));
    if (cp < 0x80) o += char(cp);
    else if (cp < 0x800) o += char(0xC0 | (cp >> 6)), o += char(0x80 | (cp & 0x3F));
    else if (cp < 0x10000) o += char(0xE0 | (cp >> 12)), o += char(0x80 | ((cp >> 6) & 0x3F)), o += char(0x80 | (cp & 0x3F));
    else o += char(0xF0 | (cp >> 18)), o += char(0x80 | ((cp >> 12) & 0x3F)), o += char(0x80 | ((cp >> 6) & 0x3F)), o += char(0x80 | (cp & 0x3F));
  }
  return o;
}

// Valid UTF-8 -> code points (the caller checked validity).
std::vector<uint32_t> Utf8ToUtf32(std::string_view s) {
  std::vector<uint32_t> o;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const int n = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    uint32_t cp = n == 0 ? c : n == 1 ? (c & 0x1F) : n == 2 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k <= n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    o.push_back(cp);
    i += n + 1;
  }
  return o;
}

// What a lazy npz read keeps alive (KvSet::backing): the mapping, and the deflated members,
// which are inflated when the file is read.
struct NpzBacking {
  std::unique_ptr<io::WholeFile> file;
  std::vector<std::vector<uint8_t>> owned;
};

Result<KvSet> ParseNpzFile(std::unique_ptr<io::WholeFile> f, bool lazy) {
  const uint8_t* d = f->data();
  const uint64_t n = f->size();
  MQKV_ASSIGN_OR_RETURN(std::vector<zip::Member> members, zip::ReadCentralDirectory(d, n));
  std::vector<std::vector<uint8_t>> owned(members.size());
  std::vector<interop::ArrayView> arrays;
  interop::StringMap meta;
  std::map<std::string, bool> seen;
  for (size_t i = 0; i < members.size(); ++i) {
    const zip::Member& m = members[i];
    if (m.name.size() < 5 || m.name.compare(m.name.size() - 4, 4, ".npy") != 0)
      return FormatError("zip member \"" + m.name + "\" is not a .npy array (an npz holds only NAME.npy members)");
    const std::string name = m.name.substr(0, m.name.size() - 4);
    if (!seen.emplace(name, true).second) return FormatError("zip member \"" + m.name + "\" appears twice");
    MQKV_ASSIGN_OR_RETURN(auto bytes, zip::MemberBytes(d, n, m, &owned[i]));
    if (lazy && m.method == 0 && name != kMetadataMember) f->Release(bytes.first, bytes.second);  // CRC read; loaded again later
    auto parsed = ParseNpy(bytes.first, bytes.second);
    if (!parsed.ok()) {
      // Offsets from ParseNpy are inside the (possibly inflated) member, not the file.
      const Status& e = parsed.status();
      const std::string at = e.offset() ? " at byte " + std::to_string(*e.offset()) + " of the member" : "";
      return Status(e.code(), "zip member \"" + m.name + "\"" + at + ": " + e.message());
    }
    const NpyArray& a = *parsed;
    if (name == kMetadataMember) {
      if (!a.is_unicode || a.shape.size() != 2 || a.shape[1] != 2)
        return FormatError("\"__metadata__.npy\" must be a [n, 2] array of unicode strings (key, value)");
      for (uint64_t r = 0; r < a.shape[0]; ++r) {
        MQKV_ASSIGN_OR_RETURN(std::string k, Utf32ToUtf8(a.data + (2 * r) * 4 * a.unicode_width, a.unicode_width));
        MQKV_ASSIGN_OR_RETURN(std::string v, Utf32ToUtf8(a.data + (2 * r + 1) * 4 * a.unicode_width, a.unicode_width));
        meta.emplace_back(std::move(k), std::move(v));
      }
      continue;
    }
    MQKV_ASSIGN_OR_RETURN(interop::ArrayView v, NumericView(a, name));
    arrays.push_back(std::move(v));
  }
  if (!lazy) return interop::Assemble(arrays, meta, "npz");
  MQKV_ASSIGN_OR_RETURN(KvSet set, interop::Assemble(arrays, meta, "npz", true, ReleaseIn(f.get())));
  auto backing = std::make_shared<NpzBacking>();
  backing->file = std::move(f);
  backing->owned = std::move(owned);  // the inner buffers (and the views into them) stay where they are
  set.backing = std::move(backing);
  return set;
}

Result<KvSet> ReadNpz(const std::string& path, FileFormat) {
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<io::WholeFile> f, io::WholeFile::Open(path));
  return ParseNpzFile(std::move(f), false);
}

Status WriteNpz(const KvSet& set, const std::string& path, FileFormat, const WriteOptions& opts) {
  MQKV_ASSIGN_OR_RETURN(interop::WritePlan plan, interop::Plan(set, /*allow_bf16=*/false, opts.dtype));
  // Metadata as a [n, 2] '<U{width}' array: numpy reads it without pickle.
  uint64_t width = 1;
  std::vector<std::vector<uint32_t>> cells;
  for (const auto& [k, v] : plan.metadata)
    for (const std::string* s : {&k, &v}) {
      if (!json::ValidUtf8(*s) || s->find('\0') != std::string::npos)
        return InvalidArgument("metadata \"" + k + "\" is not valid UTF-8 without NUL characters, which an npz string array cannot hold");
      cells.push_back(Utf8ToUtf32(*s));
      width = std::max<uint64_t>(width, cells.back().size());
    }
  std::vector<uint8_t> meta_bytes(cells.size() * width * 4, 0);
  for (size_t c = 0; c < cells.size(); ++c)
    if (!cells[c].empty()) std::memcpy(meta_bytes.data() + c * width * 4, cells[c].data(), cells[c].size() * 4);

  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<io::OutputFile> out, io::CreateOutput(path, opts.writer.fsync));
  zip::Writer zip(out.get());
  const std::string udescr = "<U" + std::to_string(width);
  MQKV_RETURN_IF_ERROR(zip.Add(std::string(kMetadataMember) + ".npy", NpyHeader(udescr.c_str(), {plan.metadata.size(), 2}), meta_bytes.data(),
                               meta_bytes.size()));
  std::vector<uint8_t> buf;
  for (interop::ArrayOut a : plan.arrays) {
    std::vector<float> hold;  // a lazy tensor's rows, loaded here one at a time
    if (a.source && a.source->lazy()) {
      MQKV_ASSIGN_OR_RETURN(const std::vector<float>* rows, RowsOf(*a.source, &hold));
      MQKV_RETURN_IF_ERROR(interop::CheckRange(*a.source, *rows, a.type));
      a.f32 = rows->data();
    }
    const uint8_t* body;
    if (a.type == ElemType::kF32 || a.type == ElemType::kI32) {
      body = a.f32 ? reinterpret_cast<const uint8_t*>(a.f32) : reinterpret_cast<const uint8_t*>(a.i32);
    } else {
      buf.resize(a.bytes());
      a.Encode(buf.data());
      body = buf.data();
    }
    MQKV_RETURN_IF_ERROR(zip.Add(a.name + ".npy", NpyHeader(NpyDescr(a.type), a.shape), body, a.bytes()));
  }
  MQKV_RETURN_IF_ERROR(zip.Finish());
  return out->Commit();
}

}  // namespace

const Adapter& NpyAdapter() {
  static const Adapter a{FileFormat::kNpy, SniffNpy, ReadNpy, WriteNpy};
  return a;
}

const Adapter& NpzAdapter() {
  static const Adapter a{FileFormat::kNpz, SniffNpz, ReadNpz, WriteNpz};
  return a;
}

Result<KvSet> ReadNpyLazy(const std::string& path) {
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<io::WholeFile> f, io::WholeFile::Open(path));
  return ParseNpyFile(std::move(f), true);
}

Result<KvSet> ReadNpzLazy(const std::string& path) {
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<io::WholeFile> f, io::WholeFile::Open(path));
  return ParseNpzFile(std::move(f), true);
}

}  // namespace mqkv::adapters
