// llama.cpp state files <-> KvSet (spec/LLAMA.md). Pinned to the llama.cpp vendored by
// llama-cpp-python 0.3.36: session files version 10, sequence files version 3, a plain
// (non-recurrent, non-iSWA) KV cache with one stream and no cell extension.
//
// ggml's element types (the traits table, quantizers, llama.cpp's cache rotation) are in
// ggml_types.h beside this file; this file holds the state-file cursor, parser and writer.
//
// Reading keeps everything that is not KV data (architecture, tokens, cell positions and seq ids
// in cell order, V layout, cache types, the token record kind) in ModelInfo / metadata so that
// writing the KvSet back in the same cache types gives the same bytes.
#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "io/io.h"
#include "util/parallel.h"
#include "../adapters.h"
#include "ggml_types.h"
#include "mqkv/llama.h"
#include "mqkv/numeric.h"

namespace mqkv::adapters {
namespace {

using GgmlType = ggml::Type;
using ggml::RotateRows;
using ggml::RotSize;
using ggml::TypeById;
using ggml::TypeByName;

constexpr uint32_t kMagicSession = 0x6767736eu;  // 'ggsn'
constexpr uint32_t kMagicSeq = 0x67677371u;      // 'ggsq'
constexpr uint32_t kMagicSeqBlob = 0xaf143cd8u;  // llama_state_seq_get_data
constexpr int32_t kTokenNull = -1;               // llama-server packed token record marker
constexpr uint32_t kServerTokensVersion = 1;
constexpr uint32_t kMaxArchName = 256;
constexpr uint32_t kCellExtBytes = 12;  // llama_kv_cell_ext {i32 x, y; i32 tok}


// ---------------------------------------------------------------------------------------------
// Bounded little-endian reader over the file bytes.
struct Cursor {
  const uint8_t* data;
  uint64_t size;
  uint64_t pos = 0;
  uint64_t left() const { return size - pos; }
  Status Need(uint64_t n, const std::string& what) const {
    if (n > left())
      return FormatErrorAt(pos, "truncated: " + what + " needs " + std::to_string(n) + " bytes, " +
                                    std::to_string(left()) + " left");
    return Status::OK();
  }
  template <typename T>
  Status Get(T* v, const std::string& what) {
    MQKV_RETURN_IF_ERROR(Need(sizeof(T), what));
    std::memcpy(v, data + pos, sizeof(T));
    pos += sizeof(T);
    return Status::OK();
  }
  Status Bytes(uint64_t n, const uint8_t** p, const std::string& what) {
    MQKV_RETURN_IF_ERROR(Need(n, what));
    *p = data + pos;
    pos += n;
    return Status::OK();
  }
};

bool MulOk(uint64_t a, uint64_t b, uint64_t* r) { return !__builtin_mul_overflow(a, b, r); }

struct LayerBytes {
  const GgmlType* k_type = nullptr;
  const GgmlType* v_type = nullptr;
  uint64_t k_row = 0, v_row = 0;  // bytes per cell
  uint32_t n_embd_k = 0, n_embd_v = 0;
  const uint8_t* k = nullptr;
  const uint8_t* v = nullptr;  // v_trans: [n_embd_v][cell] elements, else [cell][row]
};

struct Memory {
  uint32_t n_stream = 0;
  uint32_t cell_count = 0;
  std::vector<int32_t> pos;
  std::vector<std::vector<int32_t>> seqs;
  bool v_trans = false;
  std::vector<LayerBytes> layers;
};

Result<const GgmlType*> ReadType(Cursor& c, const std::string& what) {
  const uint64_t at = c.pos;
  int32_t id;
  MQKV_RETURN_IF_ERROR(c.Get(&id, what));
  const GgmlType* t = TypeById(id);
  if (!t)
    return Status(StatusCode::kUnsupported, what + " is " + ggml::TypeName(id) +
                                                 "; supported cache types: f32, f16, bf16, q8_0, q4_0")
        .WithOffset(at);
  return t;
}

Status RowWidth(const GgmlType& t, uint64_t row_bytes, uint64_t at, const std::string& what, uint32_t* n) {
  if (row_bytes == 0 || row_bytes % t.block_bytes != 0)
    return FormatErrorAt(at, what + " row size " + std::to_string(row_bytes) + " is not a whole number of " +
                                 t.name + " blocks (" + std::to_string(t.block_bytes) + " bytes)");
  const uint64_t elems = row_bytes / t.block_bytes * t.block_elems;
  if (elems > (1u << 24)) return FormatErrorAt(at, what + " row of " + std::to_string(elems) + " elements is implausible");
  *n = static_cast<uint32_t>(elems);
  return Status::OK();
}

// Parses a memory state (llama_kv_cache::state_write) with `ext` bytes of cell extension.
Result<Memory> ParseMemory(Cursor& c, uint32_t ext, bool one_seq) {
  Memory m;
  const uint64_t at_stream = c.pos;
  MQKV_RETURN_IF_ERROR(c.Get(&m.n_stream, "n_stream"));
  if (m.n_stream != 1)
    return Status(StatusCode::kUnsupported, "n_stream is " + std::to_string(m.n_stream) +
                                                " (a cache split into one stream per sequence); only a unified cache "
                                                "(n_stream 1) is supported")
        .WithOffset(at_stream);
  MQKV_RETURN_IF_ERROR(c.Get(&m.cell_count, "cell_count"));
  if (m.cell_count == 0) return FormatErrorAt(c.pos - 4, "the state holds no cells (empty KV cache)");
  const uint64_t min_cell = 8 + ext;
  uint64_t need;
  if (!MulOk(m.cell_count, min_cell, &need) || need > c.left())
    return FormatErrorAt(c.pos - 4, "cell_count " + std::to_string(m.cell_count) + " exceeds what the file can hold");
  m.pos.resize(m.cell_count);
  m.seqs.resize(m.cell_count);
  for (uint32_t i = 0; i < m.cell_count; ++i) {
    const std::string cell = "cell " + std::to_string(i);
    uint32_t n_seq;
    MQKV_RETURN_IF_ERROR(c.Get(&m.pos[i], cell + " pos"));
    MQKV_RETURN_IF_ERROR(c.Get(&n_seq, cell + " n_seq_id"));
    if (ext) MQKV_RETURN_IF_ERROR(c.Need(ext, cell + " extension"));
    c.pos += ext;
    uint64_t seq_bytes;
    if (!MulOk(n_seq, 4, &seq_bytes) || seq_bytes > c.left())
      return FormatErrorAt(c.pos - 4, cell + " n_seq_id " + std::to_string(n_seq) + " exceeds the file");
    if (one_seq && n_seq != 1)
      return FormatErrorAt(c.pos - 4, cell + " has " + std::to_string(n_seq) + " seq ids; a sequence state has exactly 1");
    m.seqs[i].resize(n_seq);
    for (uint32_t j = 0; j < n_seq; ++j) MQKV_RETURN_IF_ERROR(c.Get(&m.seqs[i][j], cell + " seq_id"));
  }
  uint32_t v_trans, n_layer;
  const uint64_t at_vt = c.pos;
  MQKV_RETURN_IF_ERROR(c.Get(&v_trans, "v_trans"));
  if (v_trans > 1) return FormatErrorAt(at_vt, "v_trans is " + std::to_string(v_trans) + " (must be 0 or 1)");
  m.v_trans = v_trans == 1;
  MQKV_RETURN_IF_ERROR(c.Get(&n_layer, "n_layer"));
  if (n_layer == 0 || uint64_t(n_layer) * 24 > c.left())
    return FormatErrorAt(c.pos - 4, "n_layer " + std::to_string(n_layer) + " is zero or exceeds the file");
  m.layers.resize(n_layer);
  for (uint32_t l = 0; l < n_layer; ++l) {
    LayerBytes& L = m.layers[l];
    const std::string name = "layer " + std::to_string(l) + " K";
    MQKV_ASSIGN_OR_RETURN(L.k_type, ReadType(c, name + " type"));
    const uint64_t at = c.pos;
    MQKV_RETURN_IF_ERROR(c.Get(&L.k_row, name + " row size"));
    MQKV_RETURN_IF_ERROR(RowWidth(*L.k_type, L.k_row, at, name, &L.n_embd_k));
    uint64_t bytes;
    if (!MulOk(L.k_row, m.cell_count, &bytes)) return FormatErrorAt(at, name + " size overflows");
    MQKV_RETURN_IF_ERROR(c.Bytes(bytes, &L.k, name + " rows"));
  }
  for (uint32_t l = 0; l < n_layer; ++l) {
    LayerBytes& L = m.layers[l];
    const std::string name = "layer " + std::to_string(l) + " V";
    MQKV_ASSIGN_OR_RETURN(L.v_type, ReadType(c, name + " type"));
    const uint64_t at = c.pos;
    uint64_t bytes;
    if (!m.v_trans) {
      MQKV_RETURN_IF_ERROR(c.Get(&L.v_row, name + " row size"));
      MQKV_RETURN_IF_ERROR(RowWidth(*L.v_type, L.v_row, at, name, &L.n_embd_v));
      if (!MulOk(L.v_row, m.cell_count, &bytes)) return FormatErrorAt(at, name + " size overflows");
    } else {
      uint32_t el;
      MQKV_RETURN_IF_ERROR(c.Get(&el, name + " element size"));
      MQKV_RETURN_IF_ERROR(c.Get(&L.n_embd_v, name + " n_embd_v_gqa"));
      if (L.v_type->quantized())
        return Status(StatusCode::kUnsupported, name + " is transposed " + L.v_type->name +
                                                    "; a transposed V must be f32, f16 or bf16 (llama.cpp needs flash "
                                                    "attention, hence a row layout, for a quantized V)")
            .WithOffset(at);
      if (el != L.v_type->block_bytes)
        return FormatErrorAt(at, name + " element size " + std::to_string(el) + " does not match " + L.v_type->name);
      if (L.n_embd_v == 0 || L.n_embd_v > (1u << 24))
        return FormatErrorAt(at + 4, name + " n_embd_v_gqa " + std::to_string(L.n_embd_v) + " is implausible");
      L.v_row = uint64_t(L.n_embd_v) * el;
      if (!MulOk(L.v_row, m.cell_count, &bytes)) return FormatErrorAt(at, name + " size overflows");
    }
    MQKV_RETURN_IF_ERROR(c.Bytes(bytes, &L.v, name + " data"));
  }
  return m;
}

// The memory state, with a diagnosis when it does not parse: a state with the 12-byte cell
// extension (M-RoPE positions / PLE token ids) parses only when that extension is assumed.
Result<Memory> ParseMemoryChecked(Cursor& c, bool one_seq) {
  Cursor plain = c;
  auto r = ParseMemory(plain, 0, one_seq);
  if (r.ok() && plain.left() == 0) {
    c = plain;
    return r;
  }
  Cursor ext = c;
  auto re = ParseMemory(ext, kCellExtBytes, one_seq);
  if (re.ok() && ext.left() == 0)
    return Status(StatusCode::kUnsupported,
                  "the cells carry the 12-byte llama_kv_cell_ext (M-RoPE 2D positions or PLE token ids); "
                  "models with cell extensions are not supported")
        .WithOffset(c.pos);
  if (!r.ok()) return r;
  return FormatErrorAt(plain.pos, std::to_string(plain.left()) +
                                      " bytes follow the KV cache state (a second cache: iSWA, hybrid or recurrent "
                                      "memory is not supported)");
}

// ---------------------------------------------------------------------------------------------
// Metadata helpers
void SetMeta(ModelInfo& m, const std::string& k, const std::string& v) {
  for (auto& kv : m.metadata)
    if (kv.first == k) {
      kv.second = v;
      return;
    }
  m.metadata.emplace_back(k, v);
}
const std::string* GetMeta(const ModelInfo& m, const std::string& k) {
  for (const auto& kv : m.metadata)
    if (kv.first == k) return &kv.second;
  return nullptr;
}

uint32_t HeadDimRule(uint32_t row) {
  if (row % 128 == 0) return 128;
  if (row % 64 == 0) return 64;
  return row;
}

// llama-server's packed token record (i32 -1, u32 version, u32 n, i32 tokens[n], u32 n_media, ...)
// of `bytes` bytes at file offset `at`, into mi.tokens.
Status ParseServerTokens(const uint8_t* rec, uint64_t bytes, uint64_t tok_at, ModelInfo& mi) {
  Cursor t{rec, bytes};
  t.pos = 4;
  uint32_t rv, n, n_media;
  MQKV_RETURN_IF_ERROR(t.Get(&rv, "server token record version"));
  if (rv != kServerTokensVersion)
    return Status(StatusCode::kUnsupported, "llama-server token record version " + std::to_string(rv) +
                                                " (this build reads version 1)")
        .WithOffset(tok_at + 4);
  MQKV_RETURN_IF_ERROR(t.Get(&n, "server token count"));
  if (uint64_t(n) * 4 > t.left()) return FormatErrorAt(tok_at + 8, "server token count exceeds its record");
  mi.tokens.resize(n);
  if (n) std::memcpy(mi.tokens.data(), t.data + t.pos, uint64_t(n) * 4);
  t.pos += uint64_t(n) * 4;
  MQKV_RETURN_IF_ERROR(t.Get(&n_media, "server media count"));
  if (n_media != 0)
    return Status(StatusCode::kUnsupported, "the llama-server token record holds " + std::to_string(n_media) +
                                                " media chunks (multimodal prompts are not supported)")
        .WithOffset(tok_at + t.pos - 4);
  if (t.left() != 0) return FormatErrorAt(tok_at + t.pos, "trailing bytes in the llama-server token record");
  return Status::OK();
}

// The file's own header: session / sequence files (magic, version, token list, llama-server's packed
// token record), seq-state blobs (the optional seq_id header). Fills mi's tokens and metadata and says
// which version text, whether the memory holds one sequence, and the token record kind.
Status ParseHeader(Cursor& c, FileFormat format, ModelInfo& mi, std::string* version, bool* one_seq, std::string* token_record) {
  if (format == FileFormat::kLlamaSession || format == FileFormat::kLlamaSeq) {
    const bool session = format == FileFormat::kLlamaSession;
    uint32_t magic, ver, n_tok;
    MQKV_RETURN_IF_ERROR(c.Get(&magic, "magic"));
    const uint32_t want = session ? kMagicSession : kMagicSeq;
    if (magic != want) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "magic 0x%08x is not a llama.cpp %s file (0x%08x '%s')", magic,
                    session ? "session" : "sequence state", want, session ? "ggsn" : "ggsq");
      return FormatErrorAt(0, buf);
    }
    MQKV_RETURN_IF_ERROR(c.Get(&ver, "version"));
    const uint32_t want_ver = session ? kLlamaSessionVersion : kLlamaStateSeqVersion;
    if (ver != want_ver)
      return Status(StatusCode::kUnsupported, std::string(session ? "session" : "sequence state") + " file version " +
                                                  std::to_string(ver) + "; this build reads version " +
                                                  std::to_string(want_ver) + " (" + kLlamaPinned + ")")
          .WithOffset(4);
    *version = (session ? "session v" : "seq-state v") + std::to_string(ver);
    SetMeta(mi, "llama.state_version", std::to_string(ver));
    MQKV_RETURN_IF_ERROR(c.Get(&n_tok, "n_token_count"));
    uint64_t tok_bytes = uint64_t(n_tok) * 4;
    MQKV_RETURN_IF_ERROR(c.Need(tok_bytes, "token list of " + std::to_string(n_tok) + " tokens"));
    const uint64_t tok_at = c.pos;
    std::vector<int32_t> toks(n_tok);
    if (n_tok) std::memcpy(toks.data(), c.data + c.pos, tok_bytes);
    c.pos += tok_bytes;
    *token_record = "plain";
    if (!session && !toks.empty() && toks[0] == kTokenNull) {
      MQKV_RETURN_IF_ERROR(ParseServerTokens(c.data + tok_at, tok_bytes, tok_at, mi));
      *token_record = "server-v1";
    } else {
      mi.tokens = std::move(toks);
    }
    *one_seq = !session;
  } else if (format == FileFormat::kLlamaSeqState) {
    uint32_t magic = 0;
    if (c.left() >= 4) std::memcpy(&magic, c.data, 4);
    if (magic == kMagicSeqBlob) {
      int32_t seq;
      c.pos = 4;
      MQKV_RETURN_IF_ERROR(c.Get(&seq, "seq_id"));
      SetMeta(mi, "llama.seq_blob_header", "1");
      SetMeta(mi, "llama.seq_id", std::to_string(seq));
    } else {
      SetMeta(mi, "llama.seq_blob_header", "0");
    }
    *version = "seq-state blob";
    *one_seq = true;
  } else if (format == FileFormat::kLlamaState) {
    *version = "state blob";
  } else {
    return InvalidArgument(std::string("not a llama.cpp format: ") + FileFormatName(format));
  }

  return Status::OK();
}

// Session files and whole-state blobs: the architecture name (printable, at most 256 bytes).
Status ParseArchitecture(Cursor& c, ModelInfo& mi) {
  uint32_t n;
  MQKV_RETURN_IF_ERROR(c.Get(&n, "architecture name length"));
  if (n == 0 || n > kMaxArchName || n > c.left())
    return FormatErrorAt(c.pos - 4, "architecture name length " + std::to_string(n) + " is implausible");
  const uint8_t* p = nullptr;
  MQKV_RETURN_IF_ERROR(c.Bytes(n, &p, "architecture name"));
  mi.architecture.assign(reinterpret_cast<const char*>(p), n);
  for (char ch : mi.architecture)
    if (static_cast<unsigned char>(ch) < 0x20 || static_cast<unsigned char>(ch) > 0x7e)
      return FormatErrorAt(c.pos - n, "architecture name is not printable text");
  return Status::OK();
}

// Cell positions as runs "start+count" separated by ',' (e.g. "10+5,40+2" for 10..14, 40, 41).
std::string PositionRuns(const std::vector<int32_t>& pos) {
  std::string out;
  for (size_t i = 0; i < pos.size();) {
    size_t j = i + 1;
    while (j < pos.size() && int64_t(pos[j]) == int64_t(pos[j - 1]) + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(pos[i]) + "+" + std::to_string(j - i);
    i = j;
  }
  return out;
}

// The positions of the first n cells; the list must hold exactly n (or, with at_least, n or more,
// the rest only checked for form).
Result<std::vector<int32_t>> ParsePositionRuns(const std::string& text, uint32_t n, bool at_least = false) {
  uint64_t listed = 0;
  std::vector<int32_t> pos;
  const char* p = text.c_str();
  while (*p) {
    char* e = nullptr;
    errno = 0;
    const long long start = std::strtoll(p, &e, 10);
    if (e == p || *e != '+' || errno) return InvalidArgument("llama.cell_positions: bad run at \"" + std::string(p).substr(0, 24) + "\"");
    p = e + 1;
    const long long count = std::strtoll(p, &e, 10);
    if (e == p || count < 1 || errno || start < INT32_MIN || start > INT32_MAX || count > INT32_MAX ||
        start + count - 1 > INT32_MAX || (!at_least && uint64_t(count) > n - listed))
      return InvalidArgument("llama.cell_positions: bad run length, or more positions than the " + std::to_string(n) + " cells");
    for (long long k = 0; k < count && pos.size() < n; ++k) pos.push_back(int32_t(start + k));
    listed += uint64_t(count);
    p = e;
    if (*p == ',') ++p;
    else if (*p) return InvalidArgument("llama.cell_positions: expected ',' at \"" + std::string(p).substr(0, 24) + "\"");
  }
  if (at_least ? listed < n : listed != n) return InvalidArgument("llama.cell_positions lists " + std::to_string(listed) + " positions, the snapshot holds " + std::to_string(n) + " cells");
  return pos;
}

// Cell positions and sequence ids, in cell order: as the snapshot's per-token positions and
// seq ids (seq id sets as metadata) when the file's token list numbers its cells. Otherwise (a
// state blob has no token list; an application may save none, or other tokens) the container
// cannot hold them per token (FORMAT.md 3.1: as many as the tokens), so positions that are not
// 0..n-1 go to metadata llama.cell_positions and seq ids other than all 0 to llama.cell_seq_sets;
// the writer restores both (spec/LLAMA.md).
void RecordCells(const Memory& m, ModelInfo& mi) {
  mi.n_layer = static_cast<uint32_t>(m.layers.size());
  bool simple = true, zero = true, iota = true;
  for (const auto& s : m.seqs) {
    simple = simple && s.size() == 1;
    zero = zero && s.size() == 1 && s[0] == 0;
  }
  for (uint32_t i = 0; i < m.cell_count; ++i) iota = iota && m.pos[i] == int32_t(i);
  const bool per_token = mi.tokens.size() == m.cell_count;
  if (per_token) {
    mi.positions = m.pos;
    mi.seq_ids.resize(m.cell_count);
    for (uint32_t i = 0; i < m.cell_count; ++i) mi.seq_ids[i] = m.seqs[i].empty() ? -1 : m.seqs[i][0];
  } else if (!iota) {
    SetMeta(mi, "llama.cell_positions", PositionRuns(m.pos));
  }
  if (per_token ? !simple : !zero) {
    std::string sets;
    for (uint32_t i = 0; i < m.cell_count; ++i) {
      if (i) sets += ';';
      for (size_t j = 0; j < m.seqs[i].size(); ++j) {
        if (j) sets += ',';
        sets += std::to_string(m.seqs[i][j]);
      }
    }
    SetMeta(mi, "llama.cell_seq_sets", sets);
  }
}

// The head split (spec/LLAMA.md, "Head split") and every layer's K and V decoded to fp32 rows,
// llama.cpp's rotation undone; cache types and rotation sizes recorded in metadata.
// One layer's K or V region of the state as fp32 rows [cells][width], llama.cpp's rotation undone.
void LayerRows(const GgmlType& t, const uint8_t* src, uint32_t cells, uint32_t width, bool transposed, uint32_t rot,
               std::vector<float>* rows) {
  rows->resize(uint64_t(cells) * width);
  if (!transposed) {
    t.to_float(src, uint64_t(cells) * width, rows->data());
  } else {
    std::vector<float> col(cells);
    for (uint32_t j = 0; j < width; ++j) {
      t.to_float(src + uint64_t(j) * cells * t.block_bytes, cells, col.data());
      for (uint32_t i = 0; i < cells; ++i) (*rows)[uint64_t(i) * width + j] = col[i];
    }
  }
  RotateRows(*rows, rot);
}

// lazy: each tensor's rows are converted when loaded (KvTensor::load; the caller keeps `m`'s bytes
// alive), then `release` is told the region is done with.
Status DecodeLayers(const Memory& m, const LlamaReadOptions& opts, KvSet* out, bool lazy,
                    const std::function<void(const uint8_t*, uint64_t)>& release) {
  KvSet& set = *out;
  ModelInfo& mi = set.model;
  // Head split (spec/LLAMA.md, "Head split").
  const LayerBytes& L0 = m.layers[0];
  const bool given = opts.head_dim_k != 0 || opts.head_dim_v != 0;
  const uint32_t hd_k = opts.head_dim_k ? opts.head_dim_k : HeadDimRule(L0.n_embd_k);
  const uint32_t hd_v = opts.head_dim_v ? opts.head_dim_v : (opts.head_dim_k && L0.n_embd_v % opts.head_dim_k == 0 ? opts.head_dim_k : HeadDimRule(L0.n_embd_v));
  SetMeta(mi, "llama.head_split", given ? "given" : "rule");
  mi.head_dim_k = hd_k;
  mi.head_dim_v = hd_v;
  mi.n_head_kv = L0.n_embd_k % hd_k == 0 ? L0.n_embd_k / hd_k : 0;

  std::string type_k = L0.k_type->name, type_v = L0.v_type->name;
  uint32_t rot_k = 0, rot_v = 0;
  set.tensors.reserve(m.layers.size() * 2);
  for (uint32_t l = 0; l < m.layers.size(); ++l) {
    const LayerBytes& L = m.layers[l];
    if (L.n_embd_k % hd_k != 0 || L.n_embd_v % hd_v != 0)
      return InvalidArgument("layer " + std::to_string(l) + ": head dims " + std::to_string(hd_k) + "/" +
                             std::to_string(hd_v) + " do not divide the rows (" + std::to_string(L.n_embd_k) + "/" +
                             std::to_string(L.n_embd_v) + " elements)");
    if (type_k != L.k_type->name) type_k = "mixed";
    if (type_v != L.v_type->name) type_v = "mixed";
    for (int kv = 0; kv < 2; ++kv) {
      const bool is_k = kv == 0;
      const GgmlType& t = is_k ? *L.k_type : *L.v_type;
      const uint32_t width = is_k ? L.n_embd_k : L.n_embd_v;
      const uint32_t hd = is_k ? hd_k : hd_v;
      KvTensor kt;
      kt.desc.layer = l;
      kt.desc.kind = is_k ? Kind::kK : Kind::kV;
      kt.desc.n_heads = width / hd;
      kt.desc.head_dim = hd;
      kt.desc.n_tokens = m.cell_count;
      kt.desc.source_dtype = t.name;
      const uint8_t* src = is_k ? L.k : L.v;
      const bool transposed = !is_k && m.v_trans;
      const uint32_t rot = RotSize(t, hd, is_k);
      const uint32_t cells = m.cell_count;
      if (lazy) {
        const GgmlType* ty = &t;  // the static type table
        const uint64_t bytes = transposed ? uint64_t(width) * cells * t.block_bytes
                                          : uint64_t(cells) * (width / t.block_elems) * t.block_bytes;
        kt.load = [ty, src, cells, width, transposed, rot, bytes, release]() -> Result<std::vector<float>> {
          std::vector<float> rows;
          LayerRows(*ty, src, cells, width, transposed, rot, &rows);
          if (release) release(src, bytes);
          return rows;
        };
        if (!rot && (std::string(t.name) == "f16" || std::string(t.name) == "bf16")) kt.exact_in = t.name;
      } else {
        LayerRows(t, src, cells, width, transposed, rot, &kt.data);
      }
      (is_k ? rot_k : rot_v) = std::max(is_k ? rot_k : rot_v, rot);
      set.tensors.push_back(std::move(kt));
    }
  }
  SetMeta(mi, "llama.cache_type_k", type_k);
  SetMeta(mi, "llama.cache_type_v", type_v);
  SetMeta(mi, "llama.attn_rot_k", std::to_string(rot_k));
  SetMeta(mi, "llama.attn_rot_v", std::to_string(rot_v));
  return Status::OK();
}

Result<KvSet> ParseStateBytes(const uint8_t* data, uint64_t size, FileFormat format, const LlamaReadOptions& opts,
                              bool lazy = false, std::function<void(const uint8_t*, uint64_t)> release = {}) {
  Cursor c{data, size};
  KvSet set;
  ModelInfo& mi = set.model;
  mi.source_engine = "llama.cpp";
  mi.source_format = FileFormatName(format);
  mi.k_rope = KRope::kPostRope;
  std::string version;
  bool one_seq = false;
  std::string token_record;

  MQKV_RETURN_IF_ERROR(ParseHeader(c, format, mi, &version, &one_seq, &token_record));
  if (format == FileFormat::kLlamaSession || format == FileFormat::kLlamaState) MQKV_RETURN_IF_ERROR(ParseArchitecture(c, mi));
  if (c.left() == 0) return FormatErrorAt(c.pos, "no KV cache state follows (the context has no memory)");

  MQKV_ASSIGN_OR_RETURN(Memory m, ParseMemoryChecked(c, one_seq));

  mi.source_engine_version = version;
  SetMeta(mi, "llama.pinned", kLlamaPinned);
  if (!token_record.empty()) SetMeta(mi, "llama.token_record", token_record);
  SetMeta(mi, "llama.v_trans", m.v_trans ? "1" : "0");
  SetMeta(mi, "llama.n_stream", std::to_string(m.n_stream));
  RecordCells(m, mi);
  MQKV_RETURN_IF_ERROR(DecodeLayers(m, opts, &set, lazy, release));
  return set;
}

// ---------------------------------------------------------------------------------------------
// Writing
struct Out {
  std::vector<uint8_t> b;
  template <typename T>
  void Put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
  }
  void PutBytes(const void* p, size_t n) {
    const auto* q = static_cast<const uint8_t*>(p);
    b.insert(b.end(), q, q + n);
  }
};

Result<std::vector<std::vector<int32_t>>> CellSeqs(const ModelInfo& mi, uint32_t n) {
  std::vector<std::vector<int32_t>> seqs(n);
  if (const std::string* s = GetMeta(mi, "llama.cell_seq_sets")) {
    size_t i = 0, start = 0;
    const std::string& t = *s;
    for (size_t p = 0; p <= t.size(); ++p) {
      if (p < t.size() && t[p] != ';') continue;
      if (i >= n) return InvalidArgument("llama.cell_seq_sets lists more cells than the " + std::to_string(n) + " held");
      std::string cell = t.substr(start, p - start);
      size_t q = 0;
      while (q < cell.size()) {
        size_t e = cell.find(',', q);
        if (e == std::string::npos) e = cell.size();
        try {
          seqs[i].push_back(std::stoi(cell.substr(q, e - q)));
        } catch (...) {
          return InvalidArgument("llama.cell_seq_sets: bad seq id list \"" + cell + "\"");
        }
        q = e + 1;
      }
      ++i;
      start = p + 1;
    }
    if (i != n) return InvalidArgument("llama.cell_seq_sets lists " + std::to_string(i) + " cells, the snapshot holds " + std::to_string(n));
    return seqs;
  }
  if (!mi.seq_ids.empty() && mi.seq_ids.size() != n)
    return InvalidArgument("snapshot has " + std::to_string(mi.seq_ids.size()) + " seq ids for " + std::to_string(n) + " tokens");
  for (uint32_t i = 0; i < n; ++i) {
    const int32_t s = mi.seq_ids.empty() ? 0 : mi.seq_ids[i];
    if (s >= 0) seqs[i].push_back(s);
  }
  return seqs;
}

Result<const GgmlType*> TargetType(const std::string& opt, const ModelInfo& mi, const std::string& key,
                                   const std::string& source_dtype) {
  std::string name = opt;
  if (name.empty() && !source_dtype.empty() && TypeByName(source_dtype)) name = source_dtype;
  if (name.empty())
    if (const std::string* s = GetMeta(mi, key); s && TypeByName(*s)) name = *s;
  if (name.empty()) name = "f16";
  const GgmlType* t = TypeByName(name);
  if (!t) return InvalidArgument("llama cache type \"" + name + "\" is not one of f32, f16, bf16, q8_0, q4_0");
  return t;
}

// The K and V tensor of every layer 0..n-1, each with the same number of cells.
Status CollectLayers(const KvSet& set, std::vector<const KvTensor*>* ks_out, std::vector<const KvTensor*>* vs_out, uint32_t* cells_out) {
  std::vector<const KvTensor*>& ks = *ks_out;
  std::vector<const KvTensor*>& vs = *vs_out;
  for (const KvTensor& t : set.tensors) {
    if (t.desc.kind == Kind::kQ) continue;
    auto& dst = t.desc.kind == Kind::kK ? ks : vs;
    if (dst.size() <= t.desc.layer) dst.resize(t.desc.layer + 1, nullptr);
    if (dst[t.desc.layer]) return InvalidArgument("two " + std::string(KindName(t.desc.kind)) + " tensors for layer " + std::to_string(t.desc.layer));
    dst[t.desc.layer] = &t;
  }
  if (ks.empty()) return InvalidArgument("no K/V tensors to write");
  if (ks.size() != vs.size()) return InvalidArgument("K and V tensors cover different layers");
  const uint32_t n_layer = static_cast<uint32_t>(ks.size());
  const uint32_t cells = ks[0] ? ks[0]->desc.n_tokens : 0;
  *cells_out = cells;
  for (uint32_t l = 0; l < n_layer; ++l) {
    if (!ks[l] || !vs[l]) return InvalidArgument("layer " + std::to_string(l) + " lacks a K or V tensor (llama.cpp needs layers 0.." + std::to_string(n_layer - 1) + ")");
    for (const KvTensor* t : {ks[l], vs[l]})
      if (t->desc.n_tokens != cells)
        return InvalidArgument("layer " + std::to_string(l) + " holds " + std::to_string(t->desc.n_tokens) + " tokens, layer 0 holds " + std::to_string(cells));
  }
  return Status::OK();
}

// What precedes the memory state: the session / sequence file header with its token record, the
// seq-state blob header, and the architecture name of session files and state blobs.
Status WriteHeader(Out& o, FileFormat format, const ModelInfo& mi) {
  if (format == FileFormat::kLlamaSession || format == FileFormat::kLlamaSeq) {
    const bool session = format == FileFormat::kLlamaSession;
    o.Put<uint32_t>(session ? kMagicSession : kMagicSeq);
    o.Put<uint32_t>(session ? kLlamaSessionVersion : kLlamaStateSeqVersion);
    const std::string* rec = GetMeta(mi, "llama.token_record");
    if (!session && rec && *rec == "server-v1") {
      const uint64_t words = 4 + mi.tokens.size();
      o.Put<uint32_t>(static_cast<uint32_t>(words));
      o.Put<int32_t>(kTokenNull);
      o.Put<uint32_t>(kServerTokensVersion);
      o.Put<uint32_t>(static_cast<uint32_t>(mi.tokens.size()));
      o.PutBytes(mi.tokens.data(), mi.tokens.size() * 4);
      o.Put<uint32_t>(0);  // no media
    } else {
      o.Put<uint32_t>(static_cast<uint32_t>(mi.tokens.size()));
      o.PutBytes(mi.tokens.data(), mi.tokens.size() * 4);
    }
  } else if (format == FileFormat::kLlamaSeqState) {
    const std::string* hdr = GetMeta(mi, "llama.seq_blob_header");
    if (!hdr || *hdr != "0") {
      int32_t seq = 0;
      if (const std::string* s = GetMeta(mi, "llama.seq_id")) seq = std::atoi(s->c_str());
      o.Put<uint32_t>(kMagicSeqBlob);
      o.Put<int32_t>(seq);
    }
  } else if (format != FileFormat::kLlamaState) {
    return InvalidArgument(std::string("not a llama.cpp format: ") + FileFormatName(format));
  }
  if (format == FileFormat::kLlamaSession || format == FileFormat::kLlamaState) {
    if (mi.architecture.empty())
      return InvalidArgument(std::string(FileFormatName(format)) +
                             " needs the model architecture name (e.g. \"llama\"), which the snapshot does not record");
    o.Put<uint32_t>(static_cast<uint32_t>(mi.architecture.size()));
    o.PutBytes(mi.architecture.data(), mi.architecture.size());
  }

  return Status::OK();
}

// Where a layer's rows come from when the KvSet holds only descriptions (a snapshot being restored):
// f16 writes the rows as f16 straight into the state (returns false when it cannot), rows decodes
// them to fp32 for the generic path. Both are called from several threads at once.
struct RowSource {
  std::function<Result<bool>(const KvTensor& t, uint8_t* dst)> f16;
  std::function<Status(const KvTensor& t, std::vector<float>* rows)> rows;
};

// One layer's K or V rows: their element type, llama.cpp's rotation, row-major or transposed
// (v_trans), and where they go in the state (after `at` bytes of the state's fixed parts).
struct LayerJob {
  const KvTensor* t = nullptr;
  bool is_k = false;
  uint32_t layer = 0;
  const GgmlType* ty = nullptr;
  uint32_t rot = 0;
  bool transposed = false;
  // K head dims re-paired for the target's RoPE (spec/INTEROP.md): 0 no, 1 neox -> norm, 2 norm -> neox.
  int repair = 0;
  size_t at = 0;       // offset into StatePlan::fixed where the rows are inserted
  uint64_t bytes = 0;  // the rows' size in the state
};

// A state laid out before any row is written: the fixed parts (header, cells, per-layer type and
// size fields) with the rows' places in them, so that the rows can be written in parallel into a
// buffer of the exact size.
struct StatePlan {
  std::vector<uint8_t> fixed;
  std::vector<LayerJob> jobs;
  uint32_t cells = 0;
  uint64_t size = 0;
};

// Writes the layer's type and size fields into o and plans its rows.
Status PlanLayer(Out& o, const KvTensor& t, bool is_k, uint32_t l, uint32_t cells, bool v_trans, const ModelInfo& mi,
                 const WriteOptions& opts, LayerJob* job) {
  const uint32_t width = t.desc.n_heads * t.desc.head_dim;
  MQKV_ASSIGN_OR_RETURN(const GgmlType* ty,
                        TargetType(is_k ? opts.llama_type_k : opts.llama_type_v, mi,
                                   is_k ? "llama.cache_type_k" : "llama.cache_type_v",
                                   (is_k ? opts.llama_type_k : opts.llama_type_v).empty() ? t.desc.source_dtype : ""));
  if (width % ty->block_elems != 0)
    return InvalidArgument("layer " + std::to_string(l) + " " + KindName(t.desc.kind) + " row of " + std::to_string(width) +
                           " elements is not a multiple of the " + ty->name + " block (" + std::to_string(ty->block_elems) + ")");
  job->t = &t;
  job->is_k = is_k;
  job->layer = l;
  job->ty = ty;
  job->rot = RotSize(*ty, t.desc.head_dim, is_k);
  job->transposed = !is_k && v_trans;
  auto pairing = [](const std::string& r) { return r == "norm" || r == "neox"; };
  // Only a known pairing is re-paired; other RoPE types (none, mrope, unknown) are written as stored.
  if (is_k && pairing(mi.rope_type) && pairing(opts.llama_rope_type) && opts.llama_rope_type != mi.rope_type) {
    if (t.desc.head_dim % 2 != 0) return InvalidArgument("an odd head_dim cannot be re-paired for RoPE");
    job->repair = opts.llama_rope_type == "norm" ? 1 : 2;
  }
  o.Put<int32_t>(ty->id);
  if (!job->transposed) {
    const uint64_t row_bytes = uint64_t(width) / ty->block_elems * ty->block_bytes;
    o.Put<uint64_t>(row_bytes);
    job->bytes = row_bytes * cells;
  } else {
    if (ty->quantized())
      return InvalidArgument(std::string("a transposed V cache cannot be ") + ty->name + " (llama.cpp needs flash attention, i.e. v_trans 0, for a quantized V)");
    o.Put<uint32_t>(ty->block_bytes);
    o.Put<uint32_t>(width);
    job->bytes = uint64_t(width) * cells * ty->block_bytes;
  }
  job->at = o.b.size();
  return Status::OK();
}

// Re-pairs every head of rows (head_dim d) for another RoPE convention (spec/INTEROP.md
// "Cross-engine K layout"): to_norm maps halves to adjacent pairs, norm[2j+i] = neox[i*d/2 + j]
// for i in {0, 1}, j < d/2; otherwise the inverse.
void RepairRopeDims(std::vector<float>& rows, uint32_t d, bool to_norm) {
  std::vector<float> head(d);
  const uint32_t h = d / 2;
  for (size_t at = 0; at + d <= rows.size(); at += d) {
    float* x = rows.data() + at;
    for (uint32_t j = 0; j < h; ++j)
      for (uint32_t i = 0; i < 2; ++i) {
        if (to_norm) head[2 * j + i] = x[i * h + j];
        else head[i * h + j] = x[2 * j + i];
      }
    std::copy(head.begin(), head.end(), x);
  }
}

// Writes one planned layer's rows to dst (job.bytes bytes). tmp is the calling thread's scratch.
Status FillLayer(const LayerJob& job, uint32_t cells, const RowSource* source, std::vector<float>& tmp, uint8_t* dst) {
  const KvTensor& t = *job.t;
  const uint32_t width = t.desc.n_heads * t.desc.head_dim;
  if (source && source->f16 && job.ty->id == 1 /* f16 */ && !job.rot && !job.transposed && !job.repair) {
    MQKV_ASSIGN_OR_RETURN(bool done, source->f16(t, dst));
    if (done) return Status::OK();
  }
  const float* src = t.data.data();
  if (source) {
    MQKV_RETURN_IF_ERROR(source->rows(t, &tmp));
    src = tmp.data();
    if (tmp.size() != uint64_t(cells) * width) return Internal("decoded rows do not match the tensor's shape");
  } else if (t.lazy()) {  // a streamed set: loaded here, by the thread that fills the layer
    MQKV_RETURN_IF_ERROR(RowsOf(t, &tmp).status());
    src = tmp.data();
  } else if (t.data.size() != uint64_t(cells) * width) {
    return InvalidArgument("tensor data size does not match its shape");
  }
  if (job.repair) {
    if (src != tmp.data()) tmp = t.data;
    RepairRopeDims(tmp, t.desc.head_dim, job.repair == 1);
    src = tmp.data();
  }
  if (job.rot) {
    if (src != tmp.data()) tmp = t.data;
    RotateRows(tmp, job.rot);
    src = tmp.data();
  }
  if (!job.transposed) {
    job.ty->from_float(src, uint64_t(cells) * width, dst);
  } else {
    std::vector<float> col(cells);
    for (uint32_t j = 0; j < width; ++j) {
      for (uint32_t i = 0; i < cells; ++i) col[i] = src[uint64_t(i) * width + j];
      job.ty->from_float(col.data(), cells, dst + uint64_t(j) * cells * job.ty->block_bytes);
    }
  }
  return Status::OK();
}

Result<StatePlan> PlanState(const KvSet& set, FileFormat format, const WriteOptions& opts) {
  const ModelInfo& mi = set.model;
  std::vector<const KvTensor*> ks, vs;
  uint32_t cells = 0;
  MQKV_RETURN_IF_ERROR(CollectLayers(set, &ks, &vs, &cells));
  const uint32_t n_layer = static_cast<uint32_t>(ks.size());
  if (cells == 0) return InvalidArgument("no tokens to write (llama.cpp cannot load an empty cache state)");

  const bool one_seq = format == FileFormat::kLlamaSeq || format == FileFormat::kLlamaSeqState;
  if (!mi.positions.empty() && mi.positions.size() != cells)
    return InvalidArgument("snapshot has " + std::to_string(mi.positions.size()) + " positions for " + std::to_string(cells) + " tokens");
  std::vector<int32_t> positions = mi.positions;  // empty: 0..n-1
  if (const std::string* runs = GetMeta(mi, "llama.cell_positions"); runs && positions.empty()) {
    MQKV_ASSIGN_OR_RETURN(positions, ParsePositionRuns(*runs, cells));
  }
  MQKV_ASSIGN_OR_RETURN(auto seqs, CellSeqs(mi, cells));
  if (one_seq)
    for (uint32_t i = 0; i < cells; ++i)
      if (seqs[i].size() != 1)
        return InvalidArgument("cell " + std::to_string(i) + " belongs to " + std::to_string(seqs[i].size()) +
                               " sequences; a llama.cpp sequence state needs exactly one per cell");

  bool v_trans = false;
  if (opts.llama_v_trans_set) v_trans = opts.llama_v_trans;
  else if (const std::string* s = GetMeta(mi, "llama.v_trans")) v_trans = *s == "1";

  Out o;
  o.b.reserve(64 + uint64_t(cells) * 16 + mi.tokens.size() * 4 + 32 * 2 * uint64_t(n_layer));
  MQKV_RETURN_IF_ERROR(WriteHeader(o, format, mi));
  o.Put<uint32_t>(1);  // n_stream
  o.Put<uint32_t>(cells);
  for (uint32_t i = 0; i < cells; ++i) {
    o.Put<int32_t>(positions.empty() ? int32_t(i) : positions[i]);
    o.Put<uint32_t>(static_cast<uint32_t>(seqs[i].size()));
    for (int32_t s : seqs[i]) o.Put<int32_t>(s);
  }
  o.Put<uint32_t>(v_trans ? 1 : 0);
  o.Put<uint32_t>(n_layer);

  StatePlan plan;
  plan.cells = cells;
  plan.jobs.resize(2 * size_t(n_layer));
  for (int kv = 0; kv < 2; ++kv) {
    const bool is_k = kv == 0;
    for (uint32_t l = 0; l < n_layer; ++l)
      MQKV_RETURN_IF_ERROR(PlanLayer(o, *(is_k ? ks[l] : vs[l]), is_k, l, cells, v_trans, mi, opts,
                                     &plan.jobs[size_t(kv) * n_layer + l]));
  }
  plan.fixed = std::move(o.b);
  plan.size = plan.fixed.size();
  for (const LayerJob& j : plan.jobs) plan.size += j.bytes;
  return plan;
}

// Writes the planned state into dst (plan.size bytes): the fixed parts in order, then the layers'
// rows on opts.threads threads (each layer in its own place, so the bytes do not depend on the
// thread count). Every byte of dst is written once: a fresh buffer needs no zero-fill.
Status FillState(const StatePlan& plan, const WriteOptions& opts, const RowSource* source, uint8_t* dst) {
  std::vector<uint64_t> offset(plan.jobs.size());
  size_t from = 0;
  uint64_t to = 0;
  for (size_t i = 0; i < plan.jobs.size(); ++i) {
    const size_t n = plan.jobs[i].at - from;
    std::memcpy(dst + to, plan.fixed.data() + from, n);
    from += n;
    to += n;
    offset[i] = to;
    to += plan.jobs[i].bytes;
  }
  std::memcpy(dst + to, plan.fixed.data() + from, plan.fixed.size() - from);
  unsigned threads = opts.threads ? opts.threads : std::max(1u, std::thread::hardware_concurrency());
  threads = unsigned(std::min<size_t>(threads, plan.jobs.size()));
  std::vector<std::vector<float>> tmp(std::max(1u, threads));
  return util::ParallelFor(plan.jobs.size(), threads, [&](size_t i, unsigned w) -> Status {
    return FillLayer(plan.jobs[i], plan.cells, source, tmp[w], dst + offset[i]);
  });
}

Result<std::vector<uint8_t>> SerializeState(const KvSet& set, FileFormat format, const WriteOptions& opts,
                                            const RowSource* source = nullptr) {
  MQKV_ASSIGN_OR_RETURN(StatePlan plan, PlanState(set, format, opts));
  std::vector<uint8_t> out(plan.size);
  MQKV_RETURN_IF_ERROR(FillState(plan, opts, source, out.data()));
  return out;
}

// ---------------------------------------------------------------------------------------------
bool SniffSession(const uint8_t* h, size_t n) {
  uint32_t m;
  if (n < 4) return false;
  std::memcpy(&m, h, 4);
  return m == kMagicSession;
}
bool SniffSeq(const uint8_t* h, size_t n) {
  uint32_t m;
  if (n < 4) return false;
  std::memcpy(&m, h, 4);
  return m == kMagicSeq;
}
bool SniffSeqBlob(const uint8_t* h, size_t n) {
  uint32_t m;
  if (n < 4) return false;
  std::memcpy(&m, h, 4);
  return m == kMagicSeqBlob;
}

Result<KvSet> ReadDefault(const std::string& path, FileFormat format) { return ReadLlamaKvSet(path, format, {}); }

// A state file is written layer by layer in file order: `threads` layers filled at a time into
// their own buffers (a lazy tensor loaded by the thread that fills it, so a streamed KvSet is never
// held whole), the fixed parts written between them. The bytes are SerializeState's.
Status Write(const KvSet& set, const std::string& path, FileFormat format, const WriteOptions& opts) {
  MQKV_ASSIGN_OR_RETURN(StatePlan plan, PlanState(set, format, opts));
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<io::OutputFile> out, io::CreateOutput(path, opts.writer.fsync));
  unsigned threads = opts.threads ? opts.threads : std::max(1u, std::thread::hardware_concurrency());
  threads = unsigned(std::max<size_t>(1, std::min<size_t>(threads, plan.jobs.size())));
  std::vector<std::vector<uint8_t>> bufs(threads);
  std::vector<std::vector<float>> tmp(threads);
  size_t from = 0;  // bytes of plan.fixed written so far
  for (size_t w0 = 0; w0 < plan.jobs.size(); w0 += threads) {
    const size_t k = std::min<size_t>(threads, plan.jobs.size() - w0);
    MQKV_RETURN_IF_ERROR(util::ParallelFor(k, unsigned(k), [&](size_t j, unsigned) -> Status {
      const LayerJob& job = plan.jobs[w0 + j];
      bufs[j].resize(job.bytes);
      return FillLayer(job, plan.cells, nullptr, tmp[j], bufs[j].data());
    }));
    for (size_t j = 0; j < k; ++j) {
      const LayerJob& job = plan.jobs[w0 + j];
      MQKV_RETURN_IF_ERROR(out->Write(plan.fixed.data() + from, job.at - from));
      from = job.at;
      MQKV_RETURN_IF_ERROR(out->Write(bufs[j].data(), bufs[j].size()));
    }
  }
  MQKV_RETURN_IF_ERROR(out->Write(plan.fixed.data() + from, plan.fixed.size() - from));
  return out->Commit();
}

}  // namespace

Status SliceLlamaCells(ModelInfo* mi, uint32_t begin, uint32_t end) {
  if (!GetMeta(*mi, "llama.n_stream")) return Status::OK();  // not read from a llama.cpp state
  if (const std::string* runs = GetMeta(*mi, "llama.cell_positions")) {
    MQKV_ASSIGN_OR_RETURN(std::vector<int32_t> pos, ParsePositionRuns(*runs, end, /*at_least=*/true));
    SetMeta(*mi, "llama.cell_positions", PositionRuns(std::vector<int32_t>(pos.begin() + begin, pos.begin() + end)));
  } else if (mi->positions.empty() && begin > 0 && end > begin) {  // cells 0..n-1, cut: begin..end-1
    SetMeta(*mi, "llama.cell_positions", std::to_string(begin) + "+" + std::to_string(end - begin));
  }
  if (const std::string* sets = GetMeta(*mi, "llama.cell_seq_sets")) {
    std::vector<std::string> cells;
    size_t start = 0;
    for (size_t p = 0; p <= sets->size(); ++p)
      if (p == sets->size() || (*sets)[p] == ';') {
        cells.push_back(sets->substr(start, p - start));
        start = p + 1;
      }
    if (end > cells.size()) return InvalidArgument("llama.cell_seq_sets lists " + std::to_string(cells.size()) + " cells, fewer than the " + std::to_string(end) + " kept");
    std::string cut;
    for (uint32_t i = begin; i < end; ++i) cut += (i > begin ? ";" : "") + cells[i];
    SetMeta(*mi, "llama.cell_seq_sets", cut);
  }
  return Status::OK();
}

const Adapter& LlamaAdapter(FileFormat f) {
  static const Adapter session{FileFormat::kLlamaSession, SniffSession, ReadDefault, Write};
  static const Adapter seq{FileFormat::kLlamaSeq, SniffSeq, ReadDefault, Write};
  static const Adapter state{FileFormat::kLlamaState, nullptr, ReadDefault, Write};
  static const Adapter seq_state{FileFormat::kLlamaSeqState, SniffSeqBlob, ReadDefault, Write};
  switch (f) {
    case FileFormat::kLlamaSession: return session;
    case FileFormat::kLlamaSeq: return seq;
    case FileFormat::kLlamaSeqState: return seq_state;
    default: return state;
  }
}

}  // namespace mqkv::adapters

namespace mqkv {

Result<KvSet> adapters::ReadLlamaLazy(const std::string& path, FileFormat format, const LlamaReadOptions& opts) {
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<io::WholeFile> opened, io::WholeFile::Open(path));
  std::shared_ptr<const io::WholeFile> f(std::move(opened));
  auto r = adapters::ParseStateBytes(f->data(), f->size(), format, opts, true,
                                     [file = f.get()](const uint8_t* p, uint64_t n) { file->Release(p, n); });
  if (!r.ok()) {
    Status s = r.status();
    return s.WithFile(path);
  }
  r->backing = f;
  return r;
}

Result<KvSet> ReadLlamaKvSet(const std::string& path, FileFormat format, const LlamaReadOptions& opts) {
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<io::WholeFile> f, io::WholeFile::Open(path));
  auto r = adapters::ParseStateBytes(f->data(), f->size(), format, opts);
  if (!r.ok()) {
    Status s = r.status();
    return s.WithFile(path);
  }
  return r;
}

bool IsLlamaFormat(FileFormat f) {
  return f == FileFormat::kLlamaSession || f == FileFormat::kLlamaSeq || f == FileFormat::kLlamaState ||
         f == FileFormat::kLlamaSeqState;
}

Result<KvSet> ParseLlamaState(const uint8_t* data, size_t size, FileFormat format, const LlamaReadOptions& opts,
                              const std::string& name) {
  if (!IsLlamaFormat(format))
    return InvalidArgument(std::string("ParseLlamaState: ") + FileFormatName(format) + " is not a llama.cpp state format");
  auto r = adapters::ParseStateBytes(data, size, format, opts);
  if (!r.ok()) {
    Status s = r.status();
    return s.WithFile(name);
  }
  return r;
}

Result<std::vector<uint8_t>> SerializeLlamaState(const KvSet& set, FileFormat format, const WriteOptions& opts) {
  if (!IsLlamaFormat(format))
    return InvalidArgument(std::string("SerializeLlamaState: ") + FileFormatName(format) + " is not a llama.cpp state format");
  return adapters::SerializeState(set, format, opts);
}

namespace {

// A snapshot's K/V tensors as descriptions only (a KvSet shell), and the row source that decodes
// them from the snapshot while the state is written: f16 straight into the state.
struct SnapshotRows {
  KvSet shell;
  std::vector<size_t> index;  // shell tensor -> snapshot tensor
  adapters::RowSource source;

  explicit SnapshotRows(const Snapshot& snap) {
    shell.model = snap.model();
    for (size_t i = 0; i < snap.tensors().size(); ++i) {
      const TensorInfo& t = snap.tensors()[i];
      if (t.kind == Kind::kQ) continue;
      KvTensor k;
      k.desc = t;
      shell.tensors.push_back(std::move(k));
      index.push_back(i);
    }
    auto which = [this](const KvTensor& t) { return index[size_t(&t - shell.tensors.data())]; };
    source.f16 = [&snap, which](const KvTensor& t, uint8_t* dst) -> Result<bool> {
      MQKV_RETURN_IF_ERROR(snap.Decode(which(t), 0, t.desc.n_tokens, DType::kF16, dst));
      return true;
    };
    source.rows = [&snap, which](const KvTensor& t, std::vector<float>* rows) -> Status {
      MQKV_ASSIGN_OR_RETURN(*rows, snap.DecodeF32(which(t), 0, t.desc.n_tokens));
      return Status::OK();
    };
  }
  SnapshotRows(const SnapshotRows&) = delete;
  SnapshotRows& operator=(const SnapshotRows&) = delete;
};

Status NotLlama(const char* fn, FileFormat format) {
  return InvalidArgument(std::string(fn) + ": " + FileFormatName(format) + " is not a llama.cpp state format");
}

}  // namespace

Result<std::vector<uint8_t>> SerializeLlamaState(const Snapshot& snap, FileFormat format, const WriteOptions& opts) {
  MQKV_ASSIGN_OR_RETURN(uint64_t size, LlamaStateSize(snap, format, opts));
  std::vector<uint8_t> out(size);
  MQKV_RETURN_IF_ERROR(SerializeLlamaState(snap, format, opts, out.data(), out.size()));
  return out;
}

Result<uint64_t> LlamaStateSize(const Snapshot& snap, FileFormat format, const WriteOptions& opts) {
  if (!IsLlamaFormat(format)) return NotLlama("LlamaStateSize", format);
  SnapshotRows rows(snap);
  auto plan = adapters::PlanState(rows.shell, format, opts);
  if (!plan.ok()) {
    Status s = plan.status();
    return s.WithFile(snap.path());
  }
  return plan->size;
}

Status SerializeLlamaState(const Snapshot& snap, FileFormat format, const WriteOptions& opts, uint8_t* dst,
                           uint64_t size) {
  if (!IsLlamaFormat(format)) return NotLlama("SerializeLlamaState", format);
  SnapshotRows rows(snap);
  auto plan = adapters::PlanState(rows.shell, format, opts);
  Status s = plan.ok() ? Status::OK() : plan.status();
  if (s.ok() && plan->size != size)
    s = InvalidArgument("the state needs " + std::to_string(plan->size) + " bytes, the buffer given holds " +
                        std::to_string(size));
  if (s.ok()) s = adapters::FillState(*plan, opts, &rows.source, dst);
  return s.ok() ? s : s.WithFile(snap.path());
}

}  // namespace mqkv
