// Snapshot reader (spec/FORMAT.md, section 8 "Reader obligations"). Open maps the file and checks
// only the file header, tail, footer and the block index against the footer (steps 1-16), so its
// cost does not grow with the number or position of blocks. A block's 128-byte header is copied
// and checked (steps 17-19) on first access to that block, then its checksum (step 21); both
// results are cached per block. OpenOptions::verify_all_blocks does all of it at open.
#include <zstd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>

#include "container.h"
#include "io/io.h"
#include "mqkv/codec.h"
#include "mqkv/snapshot.h"
#include "codec/registry.h"
#include "codec/rope.h"
#include "codec/simd.h"
#include "mqkv/numeric.h"
#include "util/parallel.h"

namespace mqkv {

using format::AddOk;
using format::MulOk;

struct Snapshot::Impl {
  std::string path;
  std::shared_ptr<ByteSource> src;
  format::Footer footer;
  uint64_t footer_offset = 0, footer_bytes = 0;
  // Per block: kUnchecked, kHeaderOk (headers[b] holds the checked copy) or kVerified (and the
  // checksum matched). headers[b] is written only under header_mu while the state is kUnchecked,
  // and read only after an acquire load sees kHeaderOk or later, so concurrent access is race-free.
  // kPayloadOk: the codec's payload checks (Codec::CheckPayload) passed too.
  enum : uint8_t { kUnchecked = 0, kHeaderOk = 1, kVerified = 2, kPayloadOk = 3 };
  std::unique_ptr<std::atomic<uint8_t>[]> state;
  std::unique_ptr<BlockHeader[]> headers;
  std::mutex header_mu;
  // The file header (steps 1-3) is checked at open for local sources; a remote source defers it
  // to the first block access, which fetches it with the block (spec/REMOTE.md).
  std::atomic<bool> file_header_ok{false};
  uint64_t cache_budget = RemoteOptions{}.cache_bytes;
  format::FileHeader file_header{};
  // Sequential-access read-ahead for remote sources (grows while blocks are read in order).
  std::mutex ra_mu;
  size_t ra_last = size_t(-1);
  uint64_t ra_bytes = 0;

  Status Fail(Status s) const { return std::move(s.WithFile(path)); }
  Status Load();
  Status CheckBlocks();
  // Steps 17-19 for one block (once; the result is cached on success).
  Result<const BlockHeader*> Header(size_t b);
  Status CheckPayload(size_t block, const BlockView& view);
  Status CheckFileHeader();  // steps 1-3 (once)
  // Bytes of block b (header + stored payload), with read-ahead for sequential remote access.
  Result<ByteRange> BlockRange(size_t b);
  Status PrefetchBlocks(size_t first, size_t last);  // [first, last)
  bool remote() const { return src->data() == nullptr; }
};

namespace {

// Remote header walks: up to this many following headers per request, merged across gaps (block
// payloads) below this many bytes.
constexpr size_t kHeaderWalk = 1024;
constexpr uint64_t kHeaderWalkGap = 64 << 10;
// Sequential read-ahead of remote blocks grows to this many bytes.
constexpr uint64_t kMaxReadAhead = 16ull << 20;

Status CheckHeaderAgainstIndex(const BlockHeader& h, const BlockInfo& bi, const TensorInfo& t, uint64_t off) {
  if (std::memcmp(h.magic, kBlockMagic, 4) != 0) return FormatErrorAt(off, "block does not start with magic \"MQKB\"");
  if (h.header_bytes != kBlockHeaderBytes)
    return FormatErrorAt(off + 4, "block header size " + std::to_string(h.header_bytes) + " (expected 128)");
  if (h.kind != static_cast<uint8_t>(t.kind) || h.layer != t.layer)
    return FormatErrorAt(off + 7, "block header (layer/kind) does not match its tensor in the index");
  if (h.token_begin != bi.token_begin || h.n_tokens != bi.n_tokens)
    return FormatErrorAt(off + 12, "block header token range does not match the index");
  if (h.n_heads != t.n_heads || h.head_dim != t.head_dim)
    return FormatErrorAt(off + 20, "block header shape does not match its tensor");
  if (h.compression > static_cast<uint8_t>(Compression::kZstd))
    return FormatErrorAt(off + 48, "unknown compression " + std::to_string(h.compression));
  if (h.code_coding > static_cast<uint8_t>(CodeCoding::kRans))
    return FormatErrorAt(off + 49, "unknown code coding " + std::to_string(h.code_coding));
  if (h.code_coding == 0 && h.levels != 0)
    return FormatErrorAt(off + 50, "levels=" + std::to_string(h.levels) + " in a block with packed codes (must be 0)");
  for (uint8_t r : h.reserved0)
    if (r != 0) return FormatErrorAt(off + 52, "reserved block header bytes are not zero");
  uint64_t len;
  if (!AddOk(h.stored_bytes, kBlockHeaderBytes, &len) || len != bi.length)
    return FormatErrorAt(off + 64, "block stored size does not match the index length");
  if (h.payload_bytes > format::kMaxPayloadBytes) return FormatErrorAt(off + 56, "block payload exceeds 4 GiB");
  if (h.compression == 0 && h.payload_bytes != h.stored_bytes)
    return FormatErrorAt(off + 56, "uncompressed block with payload size != stored size");
  if (h.compression != 0 && h.payload_bytes > h.stored_bytes * format::kMaxCompressionRatio + 4096)
    return FormatErrorAt(off + 56, "compressed block claims a decoded size beyond the 1024:1 bound");
  MQKV_RETURN_IF_ERROR(format::CheckBlockParts(h, off));  // step 18, the one home of the part rules
  const Codec* codec = GetCodec(h.codec);
  if (!codec->NamedBy(t.codec))
    return FormatErrorAt(off + 6, "block codec " + std::string(codec->name()) + " does not match its tensor's codec \"" + t.codec + "\"");
  return Status::OK();
}

}  // namespace

namespace {

// Steps 1-3 after the magic: the file header against itself and the tail's version.
Status CheckFileHeaderFields(const format::FileHeader& fh, const format::Tail& tail, uint64_t tail_off) {
  if (fh.version_major > kFormatMajor || tail.version_major > kFormatMajor) {
    const bool head = fh.version_major > kFormatMajor;
    return Unsupported("format version " + std::to_string(head ? fh.version_major : tail.version_major) + "." +
                       std::to_string(head ? fh.version_minor : tail.version_minor) +
                       " is newer than this reader (reads major " + std::to_string(kFormatMajor) + ")").WithOffset(head ? 8 : tail_off + 32);
  }
  if (fh.version_major == 0) return FormatErrorAt(8, "format major version 0 is not valid");
  if (fh.header_bytes != format::kFileHeaderBytes) return FormatErrorAt(12, "file header size " + std::to_string(fh.header_bytes) + " (expected 64)");
  for (uint8_t r : fh.reserved)
    if (r != 0) return FormatErrorAt(16, "reserved file header bytes are not zero");
  if (tail.version_major != fh.version_major || tail.version_minor != fh.version_minor)
    return FormatErrorAt(tail_off + 32, "version in tail differs from the file header");
  return Status::OK();
}

}  // namespace

Status Snapshot::Impl::CheckFileHeader() {
  if (file_header_ok.load(std::memory_order_acquire)) return Status::OK();
  MQKV_ASSIGN_OR_RETURN(ByteRange r, src->Read(0, format::kFileHeaderBytes));
  format::FileHeader fh;
  std::memcpy(&fh, r.data, sizeof fh);
  if (std::memcmp(fh.magic, format::kFileMagic, 8) != 0) return Fail(FormatErrorAt(0, "bad magic: not an mqkv file"));
  format::Tail tail{};
  tail.version_major = footer.version_major;
  tail.version_minor = footer.version_minor;
  MQKV_RETURN_IF_ERROR(Fail(CheckFileHeaderFields(fh, tail, src->size() - format::kTailBytes)));
  file_header = fh;
  file_header_ok.store(true, std::memory_order_release);
  return Status::OK();
}

Status Snapshot::Impl::Load() {
  const uint64_t n = src->size();
  const uint64_t min_size = format::kFileHeaderBytes + format::kTailBytes;
  if (n < min_size) return Fail(FormatErrorAt(0, "file is " + std::to_string(n) + " bytes, shorter than the " + std::to_string(min_size) + "-byte header and tail (truncated or not mqkv)"));
  // A local file's header is checked at open, first, as section 8 orders (bad magic there is the
  // best message for a file that is not mqkv at all); a remote one's on first block access.
  format::FileHeader fh{};
  if (!remote()) {
    MQKV_ASSIGN_OR_RETURN(ByteRange hr, src->Read(0, format::kFileHeaderBytes));
    std::memcpy(&fh, hr.data, sizeof fh);
    if (std::memcmp(fh.magic, format::kFileMagic, 8) != 0) return Fail(FormatErrorAt(0, "bad magic: not an mqkv file"));
  }
  format::Tail tail;
  const uint64_t tail_off = n - format::kTailBytes;
  MQKV_ASSIGN_OR_RETURN(ByteRange tr, src->Read(tail_off, format::kTailBytes));
  std::memcpy(&tail, tr.data, sizeof tail);
  if (std::memcmp(tail.magic, format::kFileMagic, 8) != 0)
    return Fail(FormatErrorAt(n - 8, "bad trailing magic: file is truncated or was not finished"));
  if (!remote()) {
    MQKV_RETURN_IF_ERROR(Fail(CheckFileHeaderFields(fh, tail, tail_off)));
  } else {
    format::FileHeader as_tail{};  // the tail's version stands in until the header is read
    as_tail.version_major = tail.version_major;
    as_tail.version_minor = tail.version_minor;
    as_tail.header_bytes = format::kFileHeaderBytes;
    MQKV_RETURN_IF_ERROR(Fail(CheckFileHeaderFields(as_tail, tail, tail_off)));
  }
  if (tail.tail_bytes != format::kTailBytes) return Fail(FormatErrorAt(tail_off + 36, "tail size field is not 48"));
  if (uint64_t unknown = tail.required_features & ~kKnownFeatures)
    return Fail(Unsupported("file requires feature(s) " + FeatureNames(unknown) + " unknown to this reader (knows " + FeatureNames(kKnownFeatures) + ")").WithOffset(tail_off + 24));
  uint64_t fend;
  if (tail.footer_offset < format::kFileHeaderBytes || tail.footer_offset % kBlockAlign != 0 ||
      !AddOk(tail.footer_offset, tail.footer_bytes, &fend) || fend != tail_off)
    return Fail(FormatErrorAt(tail_off, "footer location (offset " + std::to_string(tail.footer_offset) + ", " + std::to_string(tail.footer_bytes) + " bytes) is inconsistent with the file size " + std::to_string(n)));
  footer_offset = tail.footer_offset;
  footer_bytes = tail.footer_bytes;
  MQKV_ASSIGN_OR_RETURN(ByteRange fr, src->Read(footer_offset, footer_bytes));
  const uint8_t* fd = fr.data;
  if (format::Checksum(fd, footer_bytes) != tail.footer_checksum)
    return Fail(ChecksumMismatch("footer checksum mismatch (footer corrupt)").WithOffset(footer_offset));
  if (Status s = format::ParseFooter(fd, footer_bytes, &footer); !s.ok()) {
    if (s.offset()) {
      Status r(s.code(), s.message());
      r.WithOffset(footer_offset + *s.offset());
      return Fail(r);
    }
    return Fail(s.WithOffset(footer_offset));
  }
  if (footer.version_major != tail.version_major || footer.version_minor != tail.version_minor)
    return Fail(FormatErrorAt(footer_offset, "version in footer differs from the file header"));
  if (footer.required_features != tail.required_features)
    return Fail(FormatErrorAt(footer_offset, "required features in footer differ from the tail"));
  MQKV_RETURN_IF_ERROR(CheckBlocks());
  state.reset(new std::atomic<uint8_t>[footer.blocks.size()]);
  for (size_t i = 0; i < footer.blocks.size(); ++i) state[i].store(kUnchecked, std::memory_order_relaxed);
  headers.reset(new BlockHeader[footer.blocks.size()]);  // filled on first access
  if (!remote()) {
    file_header = fh;
    file_header_ok.store(true, std::memory_order_relaxed);
  }
  return Status::OK();
}

// Steps 14-16 and 20: the index against itself and the data section. Reads no block bytes.
Status Snapshot::Impl::CheckBlocks() {
  auto& tensors = footer.tensors;
  auto& blocks = footer.blocks;
  std::map<std::pair<uint32_t, uint8_t>, size_t> seen;
  for (size_t ti = 0; ti < tensors.size(); ++ti) {
    const TensorInfo& t = tensors[ti];
    const std::string tname = "tensor " + std::to_string(ti) + " (layer " + std::to_string(t.layer) + " " + KindName(t.kind) + ")";
    if (!seen.emplace(std::make_pair(t.layer, static_cast<uint8_t>(t.kind)), ti).second)
      return Fail(FormatErrorAt(footer_offset, tname + " appears twice"));
    if (t.n_heads == 0 || t.head_dim == 0 || t.n_heads > 0xFFFF || t.head_dim > 0xFFFF)
      return Fail(FormatErrorAt(footer_offset, tname + " has invalid shape " + std::to_string(t.n_heads) + "x" + std::to_string(t.head_dim)));
    uint64_t vals;
    if (!MulOk(uint64_t(t.n_tokens) * t.n_heads, t.head_dim, &vals) || !MulOk(vals, 4, &vals))
      return Fail(FormatErrorAt(footer_offset, tname + ": dimensions overflow"));
    if (t.kind == Kind::kQ && t.positions.size() != t.n_tokens)
      return Fail(FormatErrorAt(footer_offset, tname + ": query tensor needs one position per row"));
    if (t.kind != Kind::kQ && !t.positions.empty())
      return Fail(FormatErrorAt(footer_offset, tname + ": only query tensors carry positions"));
    if (!t.rope.empty()) {  // FORMAT.md §8 step 14: keys stored before RoPE (format 1.4)
      if (t.kind != Kind::kK) return Fail(FormatErrorAt(footer_offset, tname + ": only key tensors are stored before RoPE"));
      if (!(footer.required_features & kFeatureRopeUndo))
        return Fail(FormatErrorAt(footer_offset, tname + " is stored before RoPE but the file does not declare feature rope_undo"));
      if (Status s = rope::Check(t.rope, t.head_dim, tname); !s.ok()) return Fail(s.WithOffset(footer_offset));
      if (!footer.model.positions.empty() && footer.model.positions.size() < t.n_tokens)
        return Fail(FormatErrorAt(footer_offset, tname + " is stored before RoPE and has " + std::to_string(t.n_tokens) + " rows, but the file records " +
                                                     std::to_string(footer.model.positions.size()) + " positions"));
    }
    uint64_t last;
    if (!AddOk(t.first_block, t.n_blocks, &last) || last > blocks.size())
      return Fail(FormatErrorAt(footer_offset, tname + ": block range outside the block index"));
    uint32_t next = 0;
    for (uint32_t b = t.first_block; b < last; ++b) {
      if (blocks[b].tensor != ti) return Fail(FormatErrorAt(footer_offset, "block " + std::to_string(b) + " does not belong to " + tname));
      if (blocks[b].token_begin != next || blocks[b].n_tokens == 0)
        return Fail(FormatErrorAt(footer_offset, "blocks of " + tname + " do not tile its token range"));
      next += blocks[b].n_tokens;
      if (next < blocks[b].n_tokens) return Fail(FormatErrorAt(footer_offset, tname + ": token count overflows"));
    }
    if (next != t.n_tokens) return Fail(FormatErrorAt(footer_offset, "blocks of " + tname + " cover " + std::to_string(next) + " of its " + std::to_string(t.n_tokens) + " tokens"));
  }
  uint64_t prev_end = format::kFileHeaderBytes;
  for (size_t b = 0; b < blocks.size(); ++b) {
    const BlockInfo& bi = blocks[b];
    const std::string bname = "block " + std::to_string(b);
    if (bi.tensor >= tensors.size()) return Fail(FormatErrorAt(footer_offset, bname + " names tensor " + std::to_string(bi.tensor) + " which does not exist"));
    const TensorInfo& t = tensors[bi.tensor];
    if (b < t.first_block || b >= uint64_t(t.first_block) + t.n_blocks)
      return Fail(FormatErrorAt(footer_offset, bname + " lies outside its tensor's block range"));
    if (bi.offset % kBlockAlign != 0) return Fail(FormatErrorAt(bi.offset, bname + " is not 64-byte aligned"));
    if (bi.offset < prev_end) return Fail(FormatErrorAt(bi.offset, bname + " overlaps the previous block or the file header"));
    uint64_t end;
    if (bi.length < kBlockHeaderBytes || !AddOk(bi.offset, bi.length, &end) || end > footer_offset)
      return Fail(FormatErrorAt(bi.offset, bname + " (" + std::to_string(bi.length) + " bytes) extends past the data section"));
    prev_end = end;
  }
  return Status::OK();
}

Result<const BlockHeader*> Snapshot::Impl::Header(size_t b) {
  if (state[b].load(std::memory_order_acquire) != kUnchecked) return &headers[b];
  // Slow path, once per block: copy the header out of the mapping (later changes to the mapped
  // bytes cannot alter what was checked) and check it against the index.
  std::lock_guard<std::mutex> lock(header_mu);
  if (state[b].load(std::memory_order_acquire) != kUnchecked) return &headers[b];
  const BlockInfo& bi = footer.blocks[b];
  const TensorInfo& t = footer.tensors[bi.tensor];
  const std::string bname = "block " + std::to_string(b);
  if (remote() && !src->Holds(bi.offset, kBlockHeaderBytes)) {
    // A header read on its own (mqinfo's accounting walks every header): fetch this and the
    // following headers, merged where blocks are small, so a walk costs few requests.
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    if (!file_header_ok.load(std::memory_order_acquire)) ranges.emplace_back(0, format::kFileHeaderBytes);
    for (size_t k = b; k < footer.blocks.size() && k < b + kHeaderWalk; ++k)
      if (state[k].load(std::memory_order_acquire) == kUnchecked) ranges.emplace_back(footer.blocks[k].offset, kBlockHeaderBytes);
    MQKV_RETURN_IF_ERROR(src->Prefetch(ranges, kHeaderWalkGap));
  }
  MQKV_RETURN_IF_ERROR(CheckFileHeader());
  MQKV_ASSIGN_OR_RETURN(ByteRange hr, src->Read(bi.offset, kBlockHeaderBytes));
  BlockHeader h;
  std::memcpy(&h, hr.data, sizeof h);
  if (Status s = CheckHeaderAgainstIndex(h, bi, t, bi.offset); !s.ok()) return Fail(s.Prepend(bname));
  if (uint64_t f = format::BlockFeatures(h); (f & ~footer.required_features) != 0)
    return Fail(FormatErrorAt(bi.offset, bname + " uses feature(s) " + FeatureNames(f & ~footer.required_features) + " that the file does not declare"));
  headers[b] = h;
  state[b].store(kHeaderOk, std::memory_order_release);
  return &headers[b];
}

Snapshot::Snapshot(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Snapshot::~Snapshot() = default;

Result<std::unique_ptr<Snapshot>> Snapshot::Open(const std::string& path, const OpenOptions& opts) {
  MQKV_ASSIGN_OR_RETURN(std::shared_ptr<ByteSource> src, OpenSource(path, opts.remote));
  return Open(std::move(src), opts);
}

Result<std::unique_ptr<Snapshot>> Snapshot::Open(std::shared_ptr<ByteSource> source, const OpenOptions& opts) {
  if (!source) return InvalidArgument("Snapshot::Open: no source");
  auto impl = std::make_unique<Impl>();
  impl->path = source->name();
  impl->src = std::move(source);
  return Finish(std::move(impl), opts);
}

Result<std::unique_ptr<Snapshot>> Snapshot::OpenBytes(const uint8_t* data, size_t size, const std::string& name,
                                                      const OpenOptions& opts) {
  return Open(MemorySource(data, size, name), opts);
}

Result<std::unique_ptr<Snapshot>> Snapshot::Finish(std::unique_ptr<Impl> impl, const OpenOptions& opts) {
  impl->cache_budget = opts.remote.cache_bytes;
  MQKV_RETURN_IF_ERROR(impl->Load());
  std::unique_ptr<Snapshot> s(new Snapshot(std::move(impl)));
  if (opts.verify_all_blocks) {
    // Every header first (steps 17-19 in index order), then every checksum (step 21): the same
    // first error as a reader that checks all headers at open.
    for (size_t b = 0; b < s->blocks().size(); ++b) MQKV_RETURN_IF_ERROR(s->BlockHeaderAt(b).status());
    for (size_t b = 0; b < s->blocks().size(); ++b) MQKV_RETURN_IF_ERROR(s->VerifyBlock(b));
  }
  return s;
}

const std::string& Snapshot::path() const { return impl_->path; }
uint64_t Snapshot::file_bytes() const { return impl_->src->size(); }
const ByteSource& Snapshot::source() const { return *impl_->src; }
IoStats Snapshot::io_stats() const { return impl_->src->stats(); }
uint16_t Snapshot::version_major() const { return impl_->footer.version_major; }
uint16_t Snapshot::version_minor() const { return impl_->footer.version_minor; }
uint64_t Snapshot::required_features() const { return impl_->footer.required_features; }
uint64_t Snapshot::footer_offset() const { return impl_->footer_offset; }
uint64_t Snapshot::footer_bytes() const { return impl_->footer_bytes; }
const ModelInfo& Snapshot::model() const { return impl_->footer.model; }
const std::vector<TensorInfo>& Snapshot::tensors() const { return impl_->footer.tensors; }
const std::vector<BlockInfo>& Snapshot::blocks() const { return impl_->footer.blocks; }

std::optional<size_t> Snapshot::FindTensor(uint32_t layer, Kind kind) const {
  const auto& ts = tensors();
  for (size_t i = 0; i < ts.size(); ++i)
    if (ts[i].layer == layer && ts[i].kind == kind) return i;
  return std::nullopt;
}

const uint8_t* Snapshot::BlockBytes(size_t block) const {
  const uint8_t* d = impl_->src->data();
  return block < blocks().size() && d ? d + blocks()[block].offset : nullptr;
}

Status Snapshot::Prefetch(size_t block_begin, size_t block_end) const {
  block_end = std::min(block_end, blocks().size());
  if (block_begin >= block_end || !impl_->remote()) return Status::OK();
  return impl_->PrefetchBlocks(block_begin, block_end);
}

Status Snapshot::Impl::PrefetchBlocks(size_t first, size_t last) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  if (!file_header_ok.load(std::memory_order_acquire)) ranges.emplace_back(0, format::kFileHeaderBytes);
  for (size_t b = first; b < last; ++b) ranges.emplace_back(footer.blocks[b].offset, footer.blocks[b].length);
  // Blocks are 64-aligned: adjacent ones are at most 63 padding bytes apart.
  return Fail(src->Prefetch(ranges, kBlockAlign));
}

Result<ByteRange> Snapshot::Impl::BlockRange(size_t b) {
  const BlockInfo& bi = footer.blocks[b];
  if (remote() && !src->Holds(bi.offset, bi.length)) {
    // Read-ahead: a miss right after the previous block doubles the window (to 16 MiB), so a
    // whole-file pass costs few large requests while a random read fetches only its block.
    size_t last = b + 1;
    {
      std::lock_guard<std::mutex> lock(ra_mu);
      ra_bytes = (ra_last != size_t(-1) && b == ra_last + 1) ? std::min(std::max<uint64_t>(2 * ra_bytes, 1 << 20), kMaxReadAhead) : 0;
      uint64_t window = bi.length;
      while (last < footer.blocks.size() && window + footer.blocks[last].length <= ra_bytes) window += footer.blocks[last++].length;
      ra_last = last - 1;
    }
    MQKV_RETURN_IF_ERROR(PrefetchBlocks(b, last));
  }
  return src->Read(bi.offset, bi.length);
}

Result<const BlockHeader*> Snapshot::BlockHeaderAt(size_t block) const {
  if (block >= blocks().size()) return OutOfRange("block " + std::to_string(block) + " does not exist");
  return impl_->Header(block);
}

Status Snapshot::VerifyBlock(size_t block) const {
  // Remote: fetch the whole block (with read-ahead) before its header is checked, so the header
  // comes with it instead of in a request of its own.
  if (block < blocks().size() && impl_->remote() && impl_->state[block].load(std::memory_order_acquire) < Impl::kVerified)
    MQKV_RETURN_IF_ERROR(impl_->BlockRange(block).status());
  MQKV_ASSIGN_OR_RETURN(const BlockHeader* h, BlockHeaderAt(block));  // steps 17-19 before 21
  if (impl_->state[block].load(std::memory_order_acquire) >= Impl::kVerified) return Status::OK();
  const BlockInfo& bi = blocks()[block];
  MQKV_ASSIGN_OR_RETURN(ByteRange r, impl_->BlockRange(block));
  if (format::Checksum(r.data, bi.length) != bi.checksum)
    return impl_->Fail(ChecksumMismatch("block " + std::to_string(block) + " (layer " + std::to_string(h->layer) + " " +
                                        KindName(static_cast<Kind>(h->kind)) + ") checksum mismatch").WithOffset(bi.offset));
  uint8_t seen = Impl::kHeaderOk;  // never lowers kPayloadOk set by another thread
  impl_->state[block].compare_exchange_strong(seen, Impl::kVerified, std::memory_order_acq_rel);
  return Status::OK();
}

Status Snapshot::Impl::CheckPayload(size_t block, const BlockView& view) {
  if (state[block].load(std::memory_order_acquire) == kPayloadOk) return Status::OK();
  if (Status s = GetCodec(view.header->codec)->CheckPayload(view); !s.ok())
    return Fail(s.Prepend("block " + std::to_string(block)).WithOffset(footer.blocks[block].offset));
  state[block].store(kPayloadOk, std::memory_order_release);
  return Status::OK();
}

Result<BlockData> Snapshot::ReadBlock(size_t block) const {
  MQKV_RETURN_IF_ERROR(VerifyBlock(block));
  const BlockInfo& bi = blocks()[block];
  const BlockHeader& h = impl_->headers[block];  // checked and published by VerifyBlock
  BlockData out;
  out.view.header = &h;
  MQKV_ASSIGN_OR_RETURN(ByteRange range, impl_->BlockRange(block));  // cached by VerifyBlock's read
  out.keep = std::move(range.owner);
  const uint8_t* stored = range.data + kBlockHeaderBytes;
  if (h.compression == static_cast<uint8_t>(Compression::kNone)) {
    out.view.payload = stored;
    MQKV_RETURN_IF_ERROR(impl_->CheckPayload(block, out.view));
    return out;
  }
  // Exactly one zstd frame spanning the stored payload (no trailing or skippable frames).
  const size_t frame = ZSTD_findFrameCompressedSize(stored, h.stored_bytes);
  if (ZSTD_isError(frame) || frame != h.stored_bytes)
    return impl_->Fail(FormatErrorAt(bi.offset + kBlockHeaderBytes, "stored payload is not exactly one zstd frame"));
  // FORMAT.md §2.6: a standard frame (not skippable) that declares its content size, equal to
  // payload_bytes; from format 1.2 also a content checksum, so a corrupt frame under a valid block
  // checksum is refused by every libzstd version instead of decoding to version-dependent bytes.
  const uint32_t frame_magic = uint32_t(stored[0]) | uint32_t(stored[1]) << 8 | uint32_t(stored[2]) << 16 | uint32_t(stored[3]) << 24;
  if (frame_magic != 0xFD2FB528u)
    return impl_->Fail(FormatErrorAt(bi.offset + kBlockHeaderBytes, "stored payload is not a standard zstd frame"));
  const unsigned long long content = ZSTD_getFrameContentSize(stored, h.stored_bytes);
  if (content != h.payload_bytes)
    return impl_->Fail(FormatErrorAt(bi.offset + kBlockHeaderBytes,
                                     content == ZSTD_CONTENTSIZE_UNKNOWN || content == ZSTD_CONTENTSIZE_ERROR
                                         ? "zstd frame does not declare its content size"
                                         : "zstd frame declares " + std::to_string(content) + " content bytes, header says " +
                                               std::to_string(h.payload_bytes)));
  if (!(stored[4] & 0x04) && version_minor() >= 2)
    return impl_->Fail(FormatErrorAt(bi.offset + kBlockHeaderBytes + 4, "zstd frame has no content checksum (required from format 1.2)"));
  out.owned.resize(h.payload_bytes);
  size_t r = ZSTD_decompress(out.owned.data(), out.owned.size(), stored, h.stored_bytes);
  if (ZSTD_isError(r)) return impl_->Fail(FormatErrorAt(bi.offset + kBlockHeaderBytes, std::string("zstd payload does not decode: ") + ZSTD_getErrorName(r)));
  if (r != h.payload_bytes) return impl_->Fail(FormatErrorAt(bi.offset + kBlockHeaderBytes, "zstd payload decodes to " + std::to_string(r) + " bytes, header says " + std::to_string(h.payload_bytes)));
  out.view.payload = out.owned.data();
  MQKV_RETURN_IF_ERROR(impl_->CheckPayload(block, out.view));
  return out;
}

namespace {

// A key tensor stored before RoPE (spec/CODECS.md, "Keys before RoPE"): rows [lo, hi) of the
// tensor (block rows from `begin`) decoded to fp32, rotated by their positions (`known`, the
// snapshot's; empty: row = position) and then narrowed to `out` (f16 / bf16: the rotated fp32
// value rounded to nearest even). Unless `backend` is scalar, the rotation and the fp16 narrowing
// run with the active SIMD ISA (bit-identical to the reference). Rows go in chunks of 256 (an fp32
// scratch of 256 rows); an rANS block's codes are first expanded once to packed codes (htscodecs,
// as Codec::Decode does), except on the scalar backend, whose reference decoder reads the whole
// stream on every call: there the range is decoded in one call (scratch of the range).
Status DecodeBeforeRope(const TensorInfo& t, const std::vector<int32_t>& known, const BlockView& block, const Codec& codec,
                        uint32_t begin, uint32_t lo, uint32_t hi, DType out, void* dst, Backend backend) {
  const bool rans = block.header->code_coding == static_cast<uint8_t>(CodeCoding::kRans);
  std::optional<ScratchExpandedBlock> scratch;  // this thread's; released before a decode that takes it
  BlockView view = block;
  if (rans && (backend == Backend::kAuto || backend == Backend::kSimd)) {
    scratch.emplace();
    Status st;
    if (codec.Expand(block, &scratch->block, &st) && st.ok()) view = scratch->block.view;
    else scratch.reset();  // a corrupt stream: the codec's own decode below reports it
  }
  const uint32_t chunk = rans && !scratch ? hi - lo : 256;
  const uint64_t row_values = uint64_t(t.n_heads) * t.head_dim;
  std::vector<float> f32(out == DType::kF32 ? 0 : std::min<uint32_t>(chunk, hi - lo) * row_values);
  std::vector<int32_t> pos(std::min<uint32_t>(chunk, hi - lo));
  for (uint32_t a = lo; a < hi; a += chunk) {
    const uint32_t e = std::min(hi, a + chunk), n = e - a;
    float* rows = out == DType::kF32 ? static_cast<float*>(dst) + uint64_t(a - lo) * row_values : f32.data();
    MQKV_RETURN_IF_ERROR(codec.Decode(view, a - begin, e - begin, DType::kF32, rows, backend));
    for (uint32_t j = 0; j < n; ++j) pos[j] = known.empty() ? static_cast<int32_t>(a + j) : known[a + j];
    rope::RotateOn(backend, t.rope, rows, n, t.n_heads, t.head_dim, pos.data(), +1);
    if (out == DType::kF32) continue;
    uint16_t* o = static_cast<uint16_t*>(dst) + uint64_t(a - lo) * row_values;
    const uint64_t m = uint64_t(n) * row_values;
    if (out == DType::kF16) {
      if (backend == Backend::kScalar || !codec::simd::F32ToF16(rows, m, reinterpret_cast<uint8_t*>(o)))
        for (uint64_t i = 0; i < m; ++i) o[i] = f32_to_f16(rows[i]);
    } else {
      for (uint64_t i = 0; i < m; ++i) o[i] = f32_to_bf16(rows[i]);
    }
  }
  return Status::OK();
}

}  // namespace

Status Snapshot::Decode(size_t tensor, uint32_t row_begin, uint32_t row_end, DType out, void* dst, Backend backend) const {
  if (tensor >= tensors().size()) return OutOfRange("tensor " + std::to_string(tensor) + " does not exist");
  const TensorInfo& t = tensors()[tensor];
  if (row_begin > row_end || row_end > t.n_tokens)
    return OutOfRange("rows [" + std::to_string(row_begin) + ", " + std::to_string(row_end) + ") outside tensor of " + std::to_string(t.n_tokens) + " tokens");
  const uint64_t row_bytes = uint64_t(t.n_heads) * t.head_dim * DTypeSize(out);
  size_t fetched_to = 0;  // remote: blocks below this were prefetched as one window
  for (uint32_t b = t.first_block; b < t.first_block + t.n_blocks; ++b) {
    const BlockInfo& bi = blocks()[b];
    const uint32_t lo = std::max(row_begin, bi.token_begin), hi = std::min(row_end, bi.token_begin + bi.n_tokens);
    if (lo >= hi) continue;
    if (impl_->remote() && b >= fetched_to) {
      // The blocks this range still needs, in one merged request per window of at most a
      // quarter of the cache budget (a block larger than that is its own window).
      uint64_t window = 0;
      size_t e = b;
      while (e < t.first_block + t.n_blocks && blocks()[e].token_begin < row_end &&
             (e == b || window + blocks()[e].length <= impl_->cache_budget / 4))
        window += blocks()[e++].length;
      MQKV_RETURN_IF_ERROR(impl_->PrefetchBlocks(b, e));
      fetched_to = e;
    }
    MQKV_ASSIGN_OR_RETURN(BlockData data, ReadBlock(b));
    const Codec* codec = GetCodec(data.view.header->codec);
    uint8_t* o = static_cast<uint8_t*>(dst) + (lo - row_begin) * row_bytes;
    if (!t.rope.empty()) {
      if (Status s = DecodeBeforeRope(t, model().positions, data.view, *codec, bi.token_begin, lo, hi, out, o, backend); !s.ok())
        return impl_->Fail(s.WithOffset(bi.offset));
      continue;
    }
    if (Status s = codec->Decode(data.view, lo - bi.token_begin, hi - bi.token_begin, out, o, backend); !s.ok())
      return impl_->Fail(s.WithOffset(bi.offset));
  }
  return Status::OK();
}

Status Snapshot::Decode(size_t tensor, uint32_t row_begin, uint32_t row_end, DType out, void* dst, Backend backend,
                        unsigned threads) const {
  if (tensor >= tensors().size() || row_begin > row_end || row_end > tensors()[tensor].n_tokens || impl_->remote())
    return Decode(tensor, row_begin, row_end, out, dst, backend);  // its checks and errors, or the remote path
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  constexpr uint32_t kMinRows = 64;
  const uint32_t rows = row_end - row_begin;
  const size_t n = std::max<size_t>(1, std::min<size_t>(threads, rows / kMinRows));
  if (n == 1) return Decode(tensor, row_begin, row_end, out, dst, backend);
  const TensorInfo& t = tensors()[tensor];
  const uint64_t row_bytes = uint64_t(t.n_heads) * t.head_dim * DTypeSize(out);
  return util::ParallelFor(n, static_cast<unsigned>(n), [&](size_t i, unsigned) {
    const uint32_t a = row_begin + static_cast<uint32_t>(uint64_t(rows) * i / n);
    const uint32_t b = row_begin + static_cast<uint32_t>(uint64_t(rows) * (i + 1) / n);
    return Decode(tensor, a, b, out, static_cast<uint8_t*>(dst) + uint64_t(a - row_begin) * row_bytes, backend);
  });
}

Result<std::vector<float>> Snapshot::DecodeF32(size_t tensor, uint32_t row_begin, uint32_t row_end, Backend backend) const {
  if (tensor >= tensors().size()) return OutOfRange("tensor " + std::to_string(tensor) + " does not exist");
  const TensorInfo& t = tensors()[tensor];
  if (row_begin > row_end || row_end > t.n_tokens) return OutOfRange("row range outside tensor");
  std::vector<float> v(uint64_t(row_end - row_begin) * t.n_heads * t.head_dim);
  MQKV_RETURN_IF_ERROR(Decode(tensor, row_begin, row_end, DType::kF32, v.data(), backend));
  return v;
}

void Snapshot::ReleaseBlocks(size_t block_begin, size_t block_end) const {
  for (size_t b = block_begin; b < block_end && b < blocks().size(); ++b) impl_->src->Release(blocks()[b].offset, blocks()[b].length);
}

Result<CodecSpec> Snapshot::TensorSpec(size_t tensor) const {
  if (tensor >= tensors().size()) return OutOfRange("tensor " + std::to_string(tensor) + " does not exist");
  const TensorInfo& t = tensors()[tensor];
  if (t.n_blocks == 0) return CodecSpec::Parse(t.codec);
  MQKV_ASSIGN_OR_RETURN(BlockData data, ReadBlock(t.first_block));
  CodecSpec spec = GetCodec(data.view.header->codec)->SpecOf(*data.view.header, data.view.payload);
  spec.prerope = !t.rope.empty();  // a tensor's property: its blocks do not record it
  return spec;
}

}  // namespace mqkv
