// Streaming writer: blocks go to a temporary file as they are encoded; the footer and tail are
// written last; the file is fsynced and renamed over the target (spec/FORMAT.md, "Writing").
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cstddef>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "codec/rope.h"
#include "container.h"
#include "io/io.h"
#include "test_hooks.h"
#include "mqkv/codec.h"
#include "mqkv/snapshot.h"

namespace mqkv {

struct Writer::Impl {
  WriterOptions opts;
  std::unique_ptr<io::OutputFile> file;
  format::Footer footer;
  uint64_t extra_features = 0;
  bool finished = false;
  Status sticky;  // first write error: the file is unusable after it

  static Result<std::unique_ptr<Impl>> Make(const WriterOptions& opts) {
    if (opts.zstd_level < 0 || opts.zstd_level > ZSTD_maxCLevel())
      return InvalidArgument("zstd level " + std::to_string(opts.zstd_level) + " outside 0.." + std::to_string(ZSTD_maxCLevel()));
    auto impl = std::make_unique<Impl>();
    impl->opts = opts;
    return impl;
  }
  Status Fail(Status s) {
    s.WithFile(file->path());
    if (sticky.ok()) sticky = s;
    return s;
  }
  using Parts = std::array<std::vector<uint8_t>, kNumParts>;
  Status WriteBlock(uint32_t tensor, uint32_t token_begin, BlockHeader h, const Parts& parts);
  struct RowBlockRef {
    uint32_t begin;
    const EncodedBlock* block;
  };
  // Appends one tensor's encoded blocks and its index entry (file order).
  Status AddBlocks(const TensorDesc& desc, const CodecSpec& spec, const RopeUndo& rope, const std::vector<RowBlockRef>& blocks);
};

Writer::Writer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Writer::~Writer() = default;  // an uncommitted OutputFile leaves nothing behind

Result<std::unique_ptr<Writer>> Writer::Start(std::unique_ptr<Impl> impl) {
  format::FileHeader fh{};
  std::memcpy(fh.magic, format::kFileMagic, 8);
  fh.version_major = kFormatMajor;
  fh.version_minor = 0;  // rewritten by Finish() when a block needs a newer minor version
  fh.header_bytes = format::kFileHeaderBytes;
  MQKV_RETURN_IF_ERROR(impl->file->Write(&fh, sizeof fh));
  return std::unique_ptr<Writer>(new Writer(std::move(impl)));
}

Result<std::unique_ptr<Writer>> Writer::Create(const std::string& path, const WriterOptions& opts) {
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<Impl> impl, Impl::Make(opts));
  MQKV_ASSIGN_OR_RETURN(impl->file, io::CreateOutput(path, opts.fsync));
  return Start(std::move(impl));
}

Result<std::unique_ptr<Writer>> Writer::CreateInMemory(std::vector<uint8_t>* out, const std::string& name, const WriterOptions& opts) {
  if (out == nullptr) return InvalidArgument("Writer::CreateInMemory: no output vector");
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<Impl> impl, Impl::Make(opts));
  impl->file = std::make_unique<io::MemoryOutput>(out, name);
  return Start(std::move(impl));
}

const std::string& Writer::path() const { return impl_->file->path(); }
void Writer::SetModel(ModelInfo model) {
  std::sort(model.metadata.begin(), model.metadata.end());
  impl_->footer.model = std::move(model);
}
void WriterTestHooks::SetRequiredFeatures(Writer& w, uint64_t extra) { w.impl_->extra_features = extra; }
Status WriterTestHooks::SkipBytes(Writer& w, uint64_t bytes) {
  if (bytes % kBlockAlign != 0) return InvalidArgument("SkipBytes: not a multiple of 64");
  return w.impl_->file->Skip(bytes);
}

namespace {

// A block payload as (bytes, or nullptr for zeros, length) pieces in offset order: the parts where
// they are and the zero gaps between them, never assembled into one buffer.
struct Piece {
  const uint8_t* data;
  uint64_t n;
};
constexpr uint8_t kZeros[4096] = {};

std::vector<Piece> PayloadPieces(const BlockHeader& h, const std::array<std::vector<uint8_t>, kNumParts>& parts) {
  std::array<int, kNumParts> order{};
  for (int p = 0; p < kNumParts; ++p) order[p] = p;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return h.parts[a].offset < h.parts[b].offset; });
  std::vector<Piece> pieces;
  uint64_t at = 0;
  for (int p : order) {
    if (parts[p].empty()) continue;
    if (h.parts[p].offset > at) pieces.push_back({nullptr, h.parts[p].offset - at});
    pieces.push_back({parts[p].data(), parts[p].size()});
    at = h.parts[p].offset + parts[p].size();
  }
  if (h.payload_bytes > at) pieces.push_back({nullptr, h.payload_bytes - at});
  return pieces;
}

// Calls f(bytes, n) over the pieces in order, zero gaps in chunks of kZeros.
template <typename F>
Status ForEachChunk(const std::vector<Piece>& pieces, F&& f) {
  for (const Piece& pc : pieces)
    for (uint64_t done = 0; done < pc.n;) {
      const uint64_t k = pc.data ? pc.n - done : std::min<uint64_t>(sizeof kZeros, pc.n - done);
      MQKV_RETURN_IF_ERROR(f(pc.data ? pc.data + done : kZeros, k));
      done += k;
    }
  return Status::OK();
}

// One zstd frame of the payload (content size pledged, content checksum on: format 1.2) into
// `out`, sized ZSTD_compressBound(payload_bytes); returns the frame's size.
Result<uint64_t> CompressPieces(const std::vector<Piece>& pieces, uint64_t payload_bytes, int level, std::vector<uint8_t>* out) {
  out->resize(ZSTD_compressBound(payload_bytes));
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (!cctx) return Internal("zstd: cannot create a compression context");
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_contentSizeFlag, 1);
  ZSTD_CCtx_setPledgedSrcSize(cctx.get(), payload_bytes);
  ZSTD_outBuffer ob{out->data(), out->size(), 0};
  MQKV_RETURN_IF_ERROR(ForEachChunk(pieces, [&](const uint8_t* p, uint64_t n) -> Status {
    ZSTD_inBuffer ib{p, static_cast<size_t>(n), 0};
    while (ib.pos < ib.size) {
      const size_t r = ZSTD_compressStream2(cctx.get(), &ob, &ib, ZSTD_e_continue);
      if (ZSTD_isError(r)) return Internal(std::string("zstd: ") + ZSTD_getErrorName(r));
    }
    return Status::OK();
  }));
  ZSTD_inBuffer none{nullptr, 0, 0};
  for (;;) {
    const size_t r = ZSTD_compressStream2(cctx.get(), &ob, &none, ZSTD_e_end);
    if (ZSTD_isError(r)) return Internal(std::string("zstd: ") + ZSTD_getErrorName(r));
    if (r == 0) break;
  }
  return uint64_t(ob.pos);
}

}  // namespace

// Peak memory per block (spec/FORMAT.md, "Writing"): the encoder's parts plus, with zstd, one
// buffer of ZSTD_compressBound(payload_bytes). The payload is never assembled: uncompressed parts
// are hashed (XXH3 streaming) and written in place, zero gaps between them included; with zstd the
// parts stream through one compression context into that buffer.
Status Writer::Impl::WriteBlock(uint32_t tensor, uint32_t token_begin, BlockHeader h, const Parts& parts) {
  std::memcpy(h.magic, kBlockMagic, 4);
  h.header_bytes = kBlockHeaderBytes;
  h.token_begin = token_begin;
  std::array<uint64_t, kNumParts> sizes{};
  for (int p = 0; p < kNumParts; ++p) sizes[p] = parts[p].size();
  MQKV_RETURN_IF_ERROR(format::LayoutParts(sizes, &h));
  // Sanity: the codec must accept what it produced (the reader's own part check).
  if (Status s = format::CheckBlockParts(h, 0); !s.ok())
    return Fail(Internal("encoder output fails the container's part check: " + s.message()));

  std::vector<Piece> pieces = PayloadPieces(h, parts);
  h.compression = static_cast<uint8_t>(Compression::kNone);
  h.stored_bytes = h.payload_bytes;
  std::vector<uint8_t> packed;
  if (opts.zstd_level > 0 && h.payload_bytes > 0) {
    auto frame = CompressPieces(pieces, h.payload_bytes, opts.zstd_level, &packed);
    if (!frame.ok()) return Fail(frame.status());
    // Keep the compressed form only when it saves bytes and stays within the reader's ratio bound.
    if (*frame < h.payload_bytes && h.payload_bytes <= *frame * format::kMaxCompressionRatio) {
      h.compression = static_cast<uint8_t>(Compression::kZstd);
      h.stored_bytes = *frame;
      pieces.assign(1, Piece{packed.data(), *frame});
    } else {
      std::vector<uint8_t>().swap(packed);
    }
  }

  BlockInfo bi;
  bi.offset = file->position();
  bi.length = kBlockHeaderBytes + h.stored_bytes;
  bi.tensor = tensor;
  bi.token_begin = token_begin;
  bi.n_tokens = h.n_tokens;
  // XXH3-64 over header + stored payload, streamed (the same value as one call over the bytes).
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> xs(XXH3_createState(), XXH3_freeState);
  if (!xs || XXH3_64bits_reset(xs.get()) != XXH_OK) return Fail(Internal("xxhash: cannot create a hash state"));
  XXH3_64bits_update(xs.get(), &h, kBlockHeaderBytes);
  if (Status s = file->Write(&h, kBlockHeaderBytes); !s.ok()) return Fail(s);
  for (const Piece& pc : pieces) {  // zero gaps: hashed in chunks, written as zeros
    if (Status s = ForEachChunk({pc}, [&](const uint8_t* p, uint64_t n) {
          XXH3_64bits_update(xs.get(), p, n);
          return Status::OK();
        });
        !s.ok())
      return Fail(s);
    if (Status s = pc.data ? file->Write(pc.data, pc.n) : file->WriteZeros(pc.n); !s.ok()) return Fail(s);
  }
  bi.checksum = XXH3_64bits_digest(xs.get());
  if (Status s = file->WriteZeros(format::AlignUp(file->position(), kBlockAlign) - file->position()); !s.ok()) return Fail(s);
  footer.required_features |= format::BlockFeatures(h);
  footer.blocks.push_back(bi);
  return Status::OK();
}

namespace {

Status CheckDesc(const TensorDesc& d, const std::vector<TensorInfo>& existing) {
  if (d.n_heads == 0 || d.head_dim == 0 || d.n_heads > 0xFFFF || d.head_dim > 0xFFFF)
    return InvalidArgument("tensor shape " + std::to_string(d.n_heads) + " heads x " + std::to_string(d.head_dim) + " dims is not supported (1..65535 each)");
  if (d.kind == Kind::kQ && d.positions.size() != d.n_tokens)
    return InvalidArgument("a query tensor needs one position per row");
  if (d.kind != Kind::kQ && !d.positions.empty()) return InvalidArgument("only query tensors carry positions");
  for (const TensorInfo& t : existing)
    if (t.layer == d.layer && t.kind == d.kind)
      return InvalidArgument("tensor layer " + std::to_string(d.layer) + " " + KindName(d.kind) + " added twice");
  return Status::OK();
}
}  // namespace

namespace {

// A tensor's blocks as AddTensor lays them out, each with its first row: pure (no writer state),
// so tensors can be encoded on several threads and written in order (identical bytes).
struct RowBlock {
  uint32_t begin;
  EncodedBlock block;
};

Result<std::vector<RowBlock>> EncodeTensor(const TensorDesc& desc, const float* rows, const CodecSpec& spec, uint32_t max_block_tokens) {
  // Rows per block: the caller's limit, else as many as keep an f32 payload under ~3.5 GiB.
  const uint64_t row_values = uint64_t(desc.n_heads) * desc.head_dim;
  uint64_t limit = (7ull << 29) / (row_values * 4);
  if (limit == 0) limit = 1;
  if (max_block_tokens) limit = std::min<uint64_t>(limit, max_block_tokens);
  // Sink rows stay in the first block and residual rows in the last, so splitting never
  // quantizes a row the spec keeps in fp16: only the quantized middle is cut every `limit` rows
  // (the first and last block may exceed the limit by the sink / residual rows).
  const uint32_t n_total = desc.n_tokens;
  const uint32_t sinks = std::min(spec.sinks, n_total), residual = std::min(spec.residual, n_total - sinks);
  std::vector<uint32_t> starts;
  if (n_total > 0) starts.push_back(0);
  for (uint64_t b = uint64_t(sinks) + limit; b < n_total - residual; b += limit) starts.push_back(static_cast<uint32_t>(b));
  std::vector<RowBlock> out(starts.size());
  for (size_t i = 0; i < starts.size(); ++i) {
    const uint32_t begin = starts[i];
    const uint32_t n = (i + 1 < starts.size() ? starts[i + 1] : n_total) - begin;
    CodecSpec cs = spec;
    cs.sinks = i == 0 ? sinks : 0;
    cs.residual = i + 1 == starts.size() ? residual : 0;
    BlockShape shape{n, desc.n_heads, desc.head_dim};
    out[i].begin = begin;
    if (Status s = EncodeBlock(cs, rows + begin * row_values, shape, &out[i].block); !s.ok())
      return s.Prepend("encoding layer " + std::to_string(desc.layer) + " " + KindName(desc.kind));
    out[i].block.header.layer = desc.layer;
    out[i].block.header.kind = static_cast<uint8_t>(desc.kind);
  }
  return out;
}

// A tensor input's rows (given, or loaded now and dropped on return), encoded. `buf` is the
// calling thread's buffer for load_into (grown, never shrunk, during one AddTensors call). With a
// rope table the rows are rotated back by their positions first (in buf or in the loaded rows;
// given rows are copied into buf, never changed).
Result<std::vector<RowBlock>> EncodeInput(const Writer::TensorInput& t, uint32_t max_block_tokens, const RopeUndo& rope,
                                          const int32_t* positions, std::vector<float>* buf) {
  const TensorDesc& d = *t.desc;
  const uint64_t n = uint64_t(d.n_tokens) * d.n_heads * d.head_dim;
  auto encode = [&](float* rows) {
    if (!rope.empty()) rope::RotateOn(Backend::kAuto, rope, rows, d.n_tokens, d.n_heads, d.head_dim, positions, -1);
    return EncodeTensor(d, rows, t.spec, max_block_tokens);
  };
  if (!t.rows && t.load_into) {
    buf->resize(n);
    MQKV_RETURN_IF_ERROR(t.load_into(buf->data()));
    return encode(buf->data());
  }
  if (t.rows && !rope.empty()) {
    buf->assign(t.rows, t.rows + n);
    return encode(buf->data());
  }
  if (t.rows || !t.load) return EncodeTensor(d, t.rows, t.spec, max_block_tokens);
  MQKV_ASSIGN_OR_RETURN(std::vector<float> rows, t.load());
  if (rows.size() != n) return Internal("loaded rows do not match the tensor's shape");
  return encode(rows.data());
}

// The rope table of a `prerope=1` input (empty otherwise), checked against the writer's model.
Result<RopeUndo> RopeFor(const Writer::TensorInput& t, const ModelInfo& model) {
  if (!t.spec.prerope) return RopeUndo{};
  const TensorDesc& d = *t.desc;
  const std::string what = "layer " + std::to_string(d.layer) + " " + KindName(d.kind) + ": prerope=1";
  if (d.kind != Kind::kK) return InvalidArgument(what + " applies to key tensors only");
  if (t.spec.codec != CodecId::kAffine && t.spec.codec != CodecId::kCodebook)
    return InvalidArgument(what + " needs an affine or codebook codec (a lossless codec keeps the keys as they are)");
  if (!model.positions.empty() && model.positions.size() < d.n_tokens)
    return InvalidArgument(what + ": the snapshot records " + std::to_string(model.positions.size()) + " positions for " + std::to_string(d.n_tokens) + " rows");
  for (const auto& [k, v] : model.metadata)
    if (k == "llama.cell_positions")
      return InvalidArgument(what + ": the rows' positions are in metadata llama.cell_positions, not in the snapshot's positions");
  auto r = rope::TableFor(model, d.head_dim);
  if (!r.ok()) return Status(r.status()).Prepend("layer " + std::to_string(d.layer) + " " + KindName(d.kind));
  return r;
}

}  // namespace

Status Writer::Impl::AddBlocks(const TensorDesc& desc, const CodecSpec& spec, const RopeUndo& rope,
                               const std::vector<RowBlockRef>& blocks) {
  TensorInfo ti;
  static_cast<TensorDesc&>(ti) = desc;
  ti.rope = rope;
  if (!rope.empty()) footer.required_features |= kFeatureRopeUndo;
  ti.codec = spec.ToString();
  ti.first_block = static_cast<uint32_t>(footer.blocks.size());
  const uint32_t tensor = static_cast<uint32_t>(footer.tensors.size());
  for (const RowBlockRef& rb : blocks) MQKV_RETURN_IF_ERROR(WriteBlock(tensor, rb.begin, rb.block->header, rb.block->parts));
  ti.n_blocks = static_cast<uint32_t>(footer.blocks.size()) - ti.first_block;
  footer.tensors.push_back(std::move(ti));
  return Status::OK();
}

Status Writer::AddTensor(const TensorDesc& desc, const float* rows, const CodecSpec& spec) {
  return AddTensors({TensorInput{&desc, rows, spec}}, 1);
}

Status Writer::AddTensors(const std::vector<TensorInput>& tensors, unsigned threads) {
  Impl& w = *impl_;
  if (!w.sticky.ok()) return w.sticky;
  if (w.finished) return InvalidArgument("writer already finished");
  std::vector<TensorInfo> seen = w.footer.tensors;
  for (const TensorInput& t : tensors) {
    MQKV_RETURN_IF_ERROR(CheckDesc(*t.desc, seen));
    TensorInfo ti;
    static_cast<TensorDesc&>(ti) = *t.desc;
    seen.push_back(std::move(ti));
  }
  // Rope tables of prerope=1 inputs, and the rows' positions (the snapshot's, or 0..n-1).
  std::vector<RopeUndo> ropes(tensors.size());
  uint32_t max_rows = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    MQKV_ASSIGN_OR_RETURN(ropes[i], RopeFor(tensors[i], w.footer.model));
    if (!ropes[i].empty()) max_rows = std::max(max_rows, tensors[i].desc->n_tokens);
  }
  std::vector<int32_t> positions = w.footer.model.positions;
  if (positions.empty())
    for (uint32_t j = 0; j < max_rows; ++j) positions.push_back(static_cast<int32_t>(j));
  auto encode = [&](size_t i, std::vector<float>* buf) {
    return EncodeInput(tensors[i], w.opts.max_block_tokens, ropes[i], positions.data(), buf);
  };
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<size_t>(threads, tensors.size()));
  auto write = [&](size_t i, const std::vector<RowBlock>& blocks) {
    std::vector<Impl::RowBlockRef> refs;
    for (const RowBlock& rb : blocks) refs.push_back({rb.begin, &rb.block});
    return w.AddBlocks(*tensors[i].desc, tensors[i].spec, ropes[i], refs);
  };
  if (threads <= 1) {
    std::vector<float> buf;
    for (size_t i = 0; i < tensors.size(); ++i) {
      MQKV_ASSIGN_OR_RETURN(std::vector<RowBlock> blocks, encode(i, &buf));
      MQKV_RETURN_IF_ERROR(write(i, blocks));
    }
    return Status::OK();
  }
  // Workers encode tensors in index order of claim; this thread writes them in file order. At
  // most 2 x threads encoded tensors wait, so memory stays bounded by the largest tensors.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::optional<Result<std::vector<RowBlock>>>> done(tensors.size());
  size_t next = 0, written = 0;
  bool stop = false;
  const size_t window = 2 * size_t(threads);
  std::vector<std::thread> pool;
  for (unsigned k = 0; k < threads; ++k)
    pool.emplace_back([&] {
      std::vector<float> buf;  // this worker's load_into rows
      for (;;) {
        size_t i;
        {
          std::unique_lock<std::mutex> lock(mu);
          cv.wait(lock, [&] { return stop || next >= tensors.size() || next < written + window; });
          if (stop || next >= tensors.size()) return;
          i = next++;
        }
        auto r = encode(i, &buf);
        std::lock_guard<std::mutex> lock(mu);
        done[i] = std::move(r);
        cv.notify_all();
      }
    });
  Status status;
  for (size_t i = 0; i < tensors.size() && status.ok(); ++i) {
    std::optional<Result<std::vector<RowBlock>>> r;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return done[i].has_value(); });
      r = std::move(done[i]);
      done[i].reset();
    }
    status = r->ok() ? write(i, **r) : r->status();
    std::lock_guard<std::mutex> lock(mu);
    written = i + 1;
    cv.notify_all();
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    stop = true;
    cv.notify_all();
  }
  for (std::thread& t : pool) t.join();
  return status;
}

Status Writer::AddEncodedTensor(const TensorDesc& desc, const std::string& codec, const std::vector<EncodedBlock>& blocks) {
  Impl& w = *impl_;
  if (!w.sticky.ok()) return w.sticky;
  if (w.finished) return InvalidArgument("writer already finished");
  MQKV_RETURN_IF_ERROR(CheckDesc(desc, w.footer.tensors));
  if (!desc.rope.empty()) {
    if (desc.kind != Kind::kK) return InvalidArgument("only key tensors are stored before RoPE");
    MQKV_RETURN_IF_ERROR(rope::Check(desc.rope, desc.head_dim, "tensor layer " + std::to_string(desc.layer) + " k"));
  }
  TensorInfo ti;
  static_cast<TensorDesc&>(ti) = desc;
  ti.codec = codec;
  ti.first_block = static_cast<uint32_t>(w.footer.blocks.size());
  const uint32_t tensor = static_cast<uint32_t>(w.footer.tensors.size());
  uint32_t begin = 0;
  for (const EncodedBlock& src : blocks) {
    BlockHeader h = src.header;  // the parts are written from `src` as they are (no copy)
    if (h.n_heads != desc.n_heads || h.head_dim != desc.head_dim)
      return InvalidArgument("encoded block shape differs from the tensor's");
    h.layer = desc.layer;
    h.kind = static_cast<uint8_t>(desc.kind);
    MQKV_RETURN_IF_ERROR(w.WriteBlock(tensor, begin, h, src.parts));
    begin += h.n_tokens;
  }
  if (begin != desc.n_tokens) return InvalidArgument("encoded blocks hold " + std::to_string(begin) + " rows, tensor has " + std::to_string(desc.n_tokens));
  ti.n_blocks = static_cast<uint32_t>(w.footer.blocks.size()) - ti.first_block;
  if (!ti.rope.empty()) w.footer.required_features |= kFeatureRopeUndo;
  w.footer.tensors.push_back(std::move(ti));
  return Status::OK();
}

Status Writer::Finish() {
  Impl& w = *impl_;
  if (!w.sticky.ok()) return w.sticky;
  if (w.finished) return InvalidArgument("writer already finished");
  const ModelInfo& m = w.footer.model;
  if (!m.positions.empty() && m.positions.size() != m.tokens.size()) return InvalidArgument("model positions and tokens differ in length");
  if (!m.seq_ids.empty() && m.seq_ids.size() != m.tokens.size()) return InvalidArgument("model seq_ids and tokens differ in length");
  for (size_t i = 1; i < m.metadata.size(); ++i)
    if (m.metadata[i - 1].first == m.metadata[i].first) return InvalidArgument("metadata key \"" + m.metadata[i].first + "\" given twice");
  // Keys are sorted bytewise; a NUL inside a key would make FlatBuffers' strcmp order disagree.
  for (const auto& kv : m.metadata)
    if (kv.first.find('\0') != std::string::npos) return InvalidArgument("metadata key contains a NUL byte");
  // The lowest version that describes the file (spec/FORMAT.md section 7): 1.0 unless a 1.1
  // feature (fp8) is used, so files without one are byte-identical to 1.0 writers' files.
  w.footer.required_features |= w.extra_features;
  w.footer.version_major = kFormatMajor;
  w.footer.version_minor = FormatMinorFor(w.footer.required_features);
  std::vector<uint8_t> fb = format::BuildFooter(w.footer);
  format::Tail tail{};
  tail.footer_offset = w.file->position();
  tail.footer_bytes = fb.size();
  tail.footer_checksum = format::Checksum(fb.data(), fb.size());
  tail.required_features = w.footer.required_features;
  tail.version_major = w.footer.version_major;
  tail.version_minor = w.footer.version_minor;
  tail.tail_bytes = format::kTailBytes;
  std::memcpy(tail.magic, format::kFileMagic, 8);
  if (Status s = w.file->Write(fb.data(), fb.size()); !s.ok()) return w.Fail(s);
  if (Status s = w.file->Write(&tail, sizeof tail); !s.ok()) return w.Fail(s);
  if (w.footer.version_minor != 0) {  // the file header was written with minor 0
    const uint16_t minor = w.footer.version_minor;
    if (Status s = w.file->WriteAt(offsetof(format::FileHeader, version_minor), &minor, sizeof minor); !s.ok()) return w.Fail(s);
  }
  if (Status s = w.file->Commit(); !s.ok()) return w.Fail(s);
  w.finished = true;
  return Status::OK();
}

}  // namespace mqkv
