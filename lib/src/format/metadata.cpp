// All FlatBuffers <-> C++ conversion of the footer lives here.
#include <flatbuffers/flatbuffers.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "container.h"
#include "mqkv_generated.h"
#include "codec/registry.h"

namespace mqkv::format {
namespace {

std::string Str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

std::vector<int32_t> Ints(const flatbuffers::Vector<int32_t>* v) {
  return v ? std::vector<int32_t>(v->begin(), v->end()) : std::vector<int32_t>();
}

}  // namespace

uint64_t Checksum(const void* data, uint64_t n) { return XXH3_64bits(data, static_cast<size_t>(n)); }

std::vector<uint8_t> BuildFooter(const Footer& f) {
  flatbuffers::FlatBufferBuilder b(4096);
  const ModelInfo& m = f.model;
  auto arch = b.CreateString(m.architecture);
  auto rope = b.CreateString(m.rope_type);
  auto eng = b.CreateString(m.source_engine);
  auto engv = b.CreateString(m.source_engine_version);
  auto fmt = b.CreateString(m.source_format);
  fb::ModelBuilder mb(b);
  mb.add_architecture(arch);
  mb.add_n_layer(m.n_layer);
  mb.add_n_head(m.n_head);
  mb.add_n_head_kv(m.n_head_kv);
  mb.add_head_dim_k(m.head_dim_k);
  mb.add_head_dim_v(m.head_dim_v);
  mb.add_rope_type(rope);
  mb.add_rope_base(m.rope_base);
  mb.add_k_rope(static_cast<fb::KRope>(m.k_rope));
  mb.add_source_engine(eng);
  mb.add_source_engine_version(engv);
  mb.add_source_format(fmt);
  auto model = mb.Finish();

  std::vector<flatbuffers::Offset<fb::Tensor>> tensors;
  for (const TensorInfo& t : f.tensors) {
    auto codec = b.CreateString(t.codec);
    auto sdt = b.CreateString(t.source_dtype);
    flatbuffers::Offset<flatbuffers::Vector<int32_t>> pos;
    if (!t.positions.empty()) pos = b.CreateVector(t.positions);
    flatbuffers::Offset<fb::RopeUndo> rope;
    if (!t.rope.empty()) {
      auto theta = b.CreateVector(t.rope.theta);
      rope = fb::CreateRopeUndo(b, t.rope.style, theta);
    }
    fb::TensorBuilder tb(b);
    tb.add_layer(t.layer);
    tb.add_kind(static_cast<fb::TensorKind>(t.kind));
    tb.add_n_heads(t.n_heads);
    tb.add_head_dim(t.head_dim);
    tb.add_n_tokens(t.n_tokens);
    tb.add_codec(codec);
    tb.add_first_block(t.first_block);
    tb.add_n_blocks(t.n_blocks);
    if (!t.positions.empty()) tb.add_positions(pos);
    tb.add_source_dtype(sdt);
    if (!t.rope.empty()) tb.add_rope_undo(rope);
    tensors.push_back(tb.Finish());
  }
  std::vector<flatbuffers::Offset<fb::Block>> blocks;
  for (const BlockInfo& bi : f.blocks) {
    blocks.push_back(fb::CreateBlock(b, bi.offset, bi.length, bi.checksum, bi.tensor, bi.token_begin, bi.n_tokens));
  }
  std::vector<flatbuffers::Offset<fb::KeyValue>> kvs;
  for (const auto& [k, v] : m.metadata) {
    // Value string first, then the key: written as two statements, because the order of a call's
    // argument evaluation is the compiler's (GCC on x86-64 and on AArch64 differ), and the footer's
    // bytes must not depend on it (the golden vectors were written in this order).
    auto value = b.CreateString(v);
    auto key = b.CreateString(k);
    kvs.push_back(fb::CreateKeyValue(b, key, value));
  }

  auto tokens = b.CreateVector(m.tokens);
  auto positions = b.CreateVector(m.positions);
  auto seq_ids = b.CreateVector(m.seq_ids);
  auto tv = b.CreateVector(tensors);
  auto bv = b.CreateVector(blocks);
  auto kv = b.CreateVectorOfSortedTables(&kvs);
  fb::SnapshotBuilder sb(b);
  sb.add_version_major(f.version_major);
  sb.add_version_minor(f.version_minor);
  sb.add_required_features(f.required_features);
  sb.add_model(model);
  sb.add_tokens(tokens);
  sb.add_positions(positions);
  sb.add_tensors(tv);
  sb.add_blocks(bv);
  sb.add_metadata(kv);
  sb.add_seq_ids(seq_ids);
  b.Finish(sb.Finish(), fb::SnapshotIdentifier());
  return std::vector<uint8_t>(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
}

Status ParseFooter(const uint8_t* data, uint64_t size, Footer* out) {
  if (size < 8) return FormatErrorAt(0, "footer is " + std::to_string(size) + " bytes, too small for a FlatBuffer");
  if (size >= (1ull << 31)) return FormatErrorAt(0, "footer of " + std::to_string(size) + " bytes exceeds the 2 GiB FlatBuffers limit");
  if (!fb::SnapshotBufferHasIdentifier(data)) return FormatErrorAt(4, "footer does not carry the file identifier \"MQKV\"");
  flatbuffers::Verifier::Options vo;
  vo.max_depth = 64;
  vo.max_tables = static_cast<flatbuffers::uoffset_t>(std::min<uint64_t>(size * 8, 1u << 30));
  vo.check_alignment = true;
  flatbuffers::Verifier v(data, static_cast<size_t>(size), vo);
  if (!fb::VerifySnapshotBuffer(v)) return FormatErrorAt(0, "footer FlatBuffer failed verification (corrupt or not an mqkv footer)");
  const fb::Snapshot* s = fb::GetSnapshot(data);

  out->version_major = s->version_major();
  out->version_minor = s->version_minor();
  out->required_features = s->required_features();
  ModelInfo& m = out->model;
  if (const fb::Model* fm = s->model()) {
    m.architecture = Str(fm->architecture());
    m.n_layer = fm->n_layer();
    m.n_head = fm->n_head();
    m.n_head_kv = fm->n_head_kv();
    m.head_dim_k = fm->head_dim_k();
    m.head_dim_v = fm->head_dim_v();
    m.rope_type = Str(fm->rope_type());
    m.rope_base = fm->rope_base();
    const auto kr = static_cast<uint8_t>(fm->k_rope());
    if (kr > 2) return FormatError("model.k_rope has unknown value " + std::to_string(kr));
    m.k_rope = static_cast<KRope>(kr);
    m.source_engine = Str(fm->source_engine());
    m.source_engine_version = Str(fm->source_engine_version());
    m.source_format = Str(fm->source_format());
  }
  m.tokens = Ints(s->tokens());
  m.positions = Ints(s->positions());
  m.seq_ids = Ints(s->seq_ids());
  if (!m.positions.empty() && m.positions.size() != m.tokens.size())
    return FormatError("footer has " + std::to_string(m.positions.size()) + " positions for " + std::to_string(m.tokens.size()) + " tokens");
  if (!m.seq_ids.empty() && m.seq_ids.size() != m.tokens.size())
    return FormatError("footer has " + std::to_string(m.seq_ids.size()) + " sequence ids for " + std::to_string(m.tokens.size()) + " tokens");
  if (const auto* kvs = s->metadata()) {
    for (const fb::KeyValue* kv : *kvs) {
      if (!kv->key()) return FormatError("metadata entry without a key");
      if (std::memchr(kv->key()->data(), 0, kv->key()->size()))
        return FormatError("metadata key contains a NUL byte (key of " + std::to_string(kv->key()->size()) + " bytes)");
      m.metadata.emplace_back(kv->key()->str(), Str(kv->value()));
    }
    for (size_t i = 1; i < m.metadata.size(); ++i)
      if (!(m.metadata[i - 1].first < m.metadata[i].first))
        return FormatError("metadata keys are not sorted and unique (\"" + m.metadata[i].first + "\")");
  }

  if (const auto* ts = s->tensors()) {
    for (const fb::Tensor* t : *ts) {
      TensorInfo ti;
      ti.layer = t->layer();
      const auto k = static_cast<uint8_t>(t->kind());
      if (k > 2) return FormatError("tensor kind " + std::to_string(k) + " is unknown");
      ti.kind = static_cast<Kind>(k);
      ti.n_heads = t->n_heads();
      ti.head_dim = t->head_dim();
      ti.n_tokens = t->n_tokens();
      ti.codec = Str(t->codec());
      ti.first_block = t->first_block();
      ti.n_blocks = t->n_blocks();
      ti.positions = Ints(t->positions());
      ti.source_dtype = Str(t->source_dtype());
      if (const fb::RopeUndo* r = t->rope_undo()) {
        ti.rope.style = r->style();
        if (r->theta()) ti.rope.theta.assign(r->theta()->begin(), r->theta()->end());
        if (ti.rope.theta.empty()) return FormatError("tensor " + std::to_string(out->tensors.size()) + " has a rope_undo without theta");
      }
      out->tensors.push_back(std::move(ti));
    }
  }
  if (const auto* bs = s->blocks()) {
    for (const fb::Block* bl : *bs) {
      BlockInfo bi;
      bi.offset = bl->offset();
      bi.length = bl->length();
      bi.checksum = bl->checksum();
      bi.tensor = bl->tensor();
      bi.token_begin = bl->token_begin();
      bi.n_tokens = bl->n_tokens();
      out->blocks.push_back(bi);
    }
  }
  return Status::OK();
}

uint64_t BlockFeatures(const BlockHeader& h) {
  const Codec* c = GetCodec(h.codec);  // the container asks the codec; compression is its own
  return (h.compression == static_cast<uint8_t>(Compression::kZstd) ? uint64_t(kFeatureZstd) : 0) | (c ? c->Features(h) : 0);
}

// Step 18 of FORMAT.md §8 (part rules), shared by the reader, the writer's self-check and the CUDA
// host API: the codec id is known, the codec accepts the header's codec fields and gives every
// part's size; each part has exactly that size, is 8-aligned, lies inside payload_bytes and
// overlaps no other; offsets and payload_bytes are the canonical layout. Errors carry absolute
// offsets from `off`, the block's offset in its file (0 when there is no file).
Status CheckBlockParts(const BlockHeader& h, uint64_t off) {
  const Codec* codec = GetCodec(h.codec);
  if (!codec) return Status(StatusCode::kUnsupported, "block uses codec id " + std::to_string(h.codec) + ", unknown to this reader").WithOffset(off + 6);
  std::array<uint64_t, kNumParts> sizes{};
  if (Status s = codec->PartSizes(h, &sizes); !s.ok()) return s.WithOffset(off).Prepend(std::string("block of codec ") + codec->name());
  for (int p = 0; p < kNumParts; ++p) {
    const PartRef& pr = h.parts[p];
    const uint64_t poff = off + 72 + 8 * p;
    if (pr.bytes != sizes[p])
      return FormatErrorAt(poff, "part " + std::to_string(p) + " holds " + std::to_string(pr.bytes) + " bytes, codec needs " + std::to_string(sizes[p]));
    if (pr.bytes == 0) continue;
    if (pr.offset % kPartAlign != 0) return FormatErrorAt(poff, "part " + std::to_string(p) + " is not 8-byte aligned");
    if (uint64_t(pr.offset) + pr.bytes > h.payload_bytes)
      return FormatErrorAt(poff, "part " + std::to_string(p) + " extends past the payload");
    for (int q = 0; q < p; ++q) {
      const PartRef& o = h.parts[q];
      if (o.bytes == 0) continue;
      if (pr.offset < uint64_t(o.offset) + o.bytes && o.offset < uint64_t(pr.offset) + pr.bytes)
        return FormatErrorAt(poff, "parts " + std::to_string(q) + " and " + std::to_string(p) + " overlap");
    }
  }
  // Canonical layout (spec: "Part layout"): parts in slot order, each at the next multiple of 8,
  // empty parts at offset 0, the payload ending with the last part. One layout per content.
  BlockHeader canon = h;
  if (Status s = format::LayoutParts(sizes, &canon); !s.ok()) return FormatErrorAt(off + 56, "block parts exceed 4 GiB");
  for (int p = 0; p < kNumParts; ++p)
    if (h.parts[p].offset != canon.parts[p].offset)
      return FormatErrorAt(off + 72 + 8 * p, "part " + std::to_string(p) + " at payload offset " + std::to_string(h.parts[p].offset) +
                                                 ", the canonical layout puts it at " + std::to_string(canon.parts[p].offset));
  if (h.payload_bytes != canon.payload_bytes)
    return FormatErrorAt(off + 56, "payload size " + std::to_string(h.payload_bytes) + " differs from the end of its parts (" +
                                       std::to_string(canon.payload_bytes) + ")");
  return Status::OK();
}

Status LayoutParts(const std::array<uint64_t, kNumParts>& sizes, BlockHeader* h) {
  uint64_t pos = 0;
  for (int p = 0; p < kNumParts; ++p) {
    h->parts[p] = PartRef{0, 0};
    if (sizes[p] == 0) continue;
    pos = AlignUp(pos, kPartAlign);
    if (pos + sizes[p] > kMaxPayloadBytes)
      return InvalidArgument("block payload would exceed 4 GiB; split the tensor into smaller token ranges");
    h->parts[p] = PartRef{static_cast<uint32_t>(pos), static_cast<uint32_t>(sizes[p])};
    pos += sizes[p];
  }
  h->payload_bytes = pos;
  return Status::OK();
}

std::string FeatureNames(uint64_t bits) {
  static const char* kNames[] = {"zstd", "affine", "codebook", "hadamard", "fp8", "rans", "rope_undo"};
  constexpr int kNamed = sizeof kNames / sizeof kNames[0];
  static_assert(kKnownFeatures == (1ull << kNamed) - 1, "every known feature bit has a name");
  std::string s;
  for (int i = 0; i < 64; ++i) {
    if (!(bits >> i & 1)) continue;
    if (!s.empty()) s += "|";
    s += i < kNamed ? std::string(kNames[i]) : "bit " + std::to_string(i);
  }
  return s.empty() ? "none" : s;
}

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kK: return "k";
    case Kind::kV: return "v";
    case Kind::kQ: return "q";
  }
  return "?";
}

const char* KRopeName(KRope k) {
  switch (k) {
    case KRope::kPreRope: return "pre";
    case KRope::kPostRope: return "post";
    default: return "unknown";
  }
}

}  // namespace mqkv::format

namespace mqkv {
std::string FeatureNames(uint64_t bits) { return format::FeatureNames(bits); }
const char* KindName(Kind k) { return format::KindName(k); }
const char* KRopeName(KRope k) { return format::KRopeName(k); }
}  // namespace mqkv
