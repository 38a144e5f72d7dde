// Accounting of a snapshot (spec/MEASURE.md, "Accounting"): every byte of the file is assigned
// to one tensor's breakdown or to the total's footer_index, using only the index, the block
// headers and Codec::Account. No payload byte is read.
#include <cmath>

#include "mqkv/measure.h"
#include "codec/registry.h"

namespace mqkv {

int64_t Breakdown::Sum() const {
  return int64_t(Content() + codebook + block_headers + padding + footer_index) + entropy_coding;
}

int64_t Breakdown::Overhead() const {
  return int64_t(codebook + block_headers + padding + footer_index) + entropy_coding;
}

Breakdown& Breakdown::operator+=(const Breakdown& o) {
  codes += o.codes;
  group_meta += o.group_meta;
  shared_ranges += o.shared_ranges;
  fp16_rows += o.fp16_rows;
  codebook += o.codebook;
  block_headers += o.block_headers;
  padding += o.padding;
  entropy_coding += o.entropy_coding;
  footer_index += o.footer_index;
  return *this;
}

double TensorAccounting::excess_percent() const {
  if (modeled_bits <= 0) return stored_bytes ? INFINITY : 0.0;
  return 100.0 * (8.0 * double(stored_bytes) - modeled_bits) / modeled_bits;
}

bool TensorAccounting::explained() const {
  // Exact in integers where possible: modeled bits of the built-in codecs are whole numbers;
  // allow one part in 1e12 of slack for a codec whose model is fractional.
  const double excess = 8.0 * double(stored_bytes) - modeled_bits;
  const double overhead = 8.0 * double(breakdown.Overhead()) + double(tail_allowance_bits);
  return excess <= overhead + 1e-12 * std::max(1.0, std::fabs(modeled_bits));
}

Result<SnapshotAccounting> AccountSnapshot(const Snapshot& s) {
  SnapshotAccounting out;
  out.file_bytes = s.file_bytes();
  const auto& tensors = s.tensors();
  const auto& blocks = s.blocks();
  out.tensors.resize(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = tensors[i];
    TensorAccounting& ta = out.tensors[i];
    ta.tensor = i;
    ta.layer = t.layer;
    ta.kind = t.kind;
    ta.codec = t.codec;
    ta.n_blocks = t.n_blocks;
    ta.values = uint64_t(t.n_tokens) * t.n_heads * t.head_dim;
  }
  // The reader guarantees blocks are in file order, 64-aligned, non-overlapping, inside
  // [64, footer_offset), and BlockHeaderAt that a header's codec is known and its parts consistent
  // (a bad header is an error here: the header is checked on first access, not at open).
  for (size_t b = 0; b < blocks.size(); ++b) {
    const BlockInfo& bi = blocks[b];
    MQKV_ASSIGN_OR_RETURN(const BlockHeader* hp, s.BlockHeaderAt(b));
    const BlockHeader& h = *hp;
    const Codec* codec = GetCodec(h.codec);
    if (!codec) return Internal("block " + std::to_string(b) + ": codec id " + std::to_string(h.codec) + " vanished after open");
    const Accounting a = codec->Account(h);
    const uint64_t covered = a.codes + a.group_meta + a.shared_ranges + a.fp16_rows + a.codebook + a.padding;
    if (covered != h.payload_bytes) {
      Status st = Internal(std::string("codec ") + codec->name() + " accounts for " + std::to_string(covered) + " of the " +
                           std::to_string(h.payload_bytes) + " payload bytes of block " + std::to_string(b));
      st.WithFile(s.path()).WithOffset(bi.offset);
      return st;
    }
    const uint64_t next = b + 1 < blocks.size() ? blocks[b + 1].offset : s.footer_offset();
    TensorAccounting& ta = out.tensors[bi.tensor];
    Breakdown& d = ta.breakdown;
    d.codes += a.codes;
    d.group_meta += a.group_meta;
    d.shared_ranges += a.shared_ranges;
    d.fp16_rows += a.fp16_rows;
    d.codebook += a.codebook;
    d.padding += a.padding + (next - (bi.offset + bi.length));
    d.block_headers += kBlockHeaderBytes;
    d.entropy_coding += int64_t(h.stored_bytes) - int64_t(h.payload_bytes);
    ta.modeled_bits += a.modeled_bits;
    for (int p : {kPartCodes, kPartScales, kPartMins, kPartRanges, kPartSinkRows, kPartResidualRows})
      if (h.parts[p].bytes) ta.tail_allowance_bits += 7;
    ta.stored_bytes += next - bi.offset;
    for (int p = 0; p < kNumParts; ++p) ta.part_bytes[p] += h.parts[p].bytes;
    ta.payload_bytes += h.payload_bytes;
    ta.block_bytes += bi.length;
    ta.compressed_blocks += h.compression != 0;
  }
  TensorAccounting& total = out.total;
  total.tensor = tensors.size();
  total.codec = "k+v";
  for (const TensorAccounting& ta : out.tensors) {
    if (ta.kind == Kind::kQ) {
      ++out.query_tensors;
      out.query_values += ta.values;
      out.query_bytes += ta.stored_bytes;
      continue;
    }
    total.n_blocks += ta.n_blocks;
    total.values += ta.values;
    total.stored_bytes += ta.stored_bytes;
    total.modeled_bits += ta.modeled_bits;
    total.breakdown += ta.breakdown;
    total.tail_allowance_bits += ta.tail_allowance_bits;
  }
  // File header, any gap before the first block, footer and tail.
  const uint64_t first = blocks.empty() ? s.footer_offset() : blocks[0].offset;
  const uint64_t index = first + (out.file_bytes - s.footer_offset());
  total.breakdown.footer_index = index;
  total.stored_bytes += index;
  if (total.stored_bytes + out.query_bytes != out.file_bytes || total.breakdown.Sum() != int64_t(total.stored_bytes))
    return Internal("accounting does not add up to the file size of " + s.path());
  return out;
}

}  // namespace mqkv
