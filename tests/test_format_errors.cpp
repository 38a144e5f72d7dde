// Every reader check of spec/FORMAT.md ("Reader obligations") exercised by a crafted bad file:
// a valid snapshot is written, then bytes are patched or the footer is rebuilt through the
// FlatBuffers builder (format::BuildFooter) with the tail checksum recomputed, so that the
// intended check fires rather than a checksum. Each case asserts the StatusCode and the message.
// Checks 1-16 fire at Open (Expect); the block-header checks 17-19 fire on first access of the
// block and at Open only with verify_all_blocks (ExpectAtAccess, which also asserts the offset).
#include <gtest/gtest.h>
#include <zstd.h>

#include <cstring>
#include <functional>
#include <optional>

#include "format/container.h"
#include "mqkv/mqkv.h"
#include "mqkv_generated.h"
#include "support.h"

using namespace mqkv;
using mqkv::testing::ReadFile;
using mqkv::testing::TempDir;
using mqkv::testing::WriteFile;

namespace {

// 2 layers x {K, V}, 6 tokens x 2 heads x 8 dims, f16, max 4 tokens per block:
// tensor t has blocks 2t (tokens 0..3) and 2t+1 (tokens 4..5).
std::vector<uint8_t> BaseFile(const TempDir& dir, int zstd_level = 0) {
  const std::string path = dir.Path(zstd_level ? "base_zstd.mqkv" : "base.mqkv");
  auto w = Writer::Create(path, {.zstd_level = zstd_level, .max_block_tokens = 4, .fsync = false});
  EXPECT_TRUE(w.ok());
  ModelInfo m;
  m.architecture = "llama";
  m.tokens = {1, 2, 3, 4, 5, 6};
  m.metadata = {{"k", "v"}};
  (*w)->SetModel(m);
  std::vector<float> rows(6 * 2 * 8);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = zstd_level ? float(i % 4) : float(int(i) - 40) / 16.0f;
  for (uint32_t l = 0; l < 2; ++l)
    for (Kind k : {Kind::kK, Kind::kV}) {
      TensorDesc d{.layer = l, .kind = k, .n_heads = 2, .head_dim = 8, .n_tokens = 6, .positions = {}, .source_dtype = "", .rope = {}};
      EXPECT_TRUE((*w)->AddTensor(d, rows.data(), *CodecSpec::Parse("f16")).ok());
    }
  EXPECT_TRUE((*w)->Finish().ok());
  return ReadFile(path);
}

template <typename T>
T Get(const std::vector<uint8_t>& b, uint64_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}
template <typename T>
void Put(std::vector<uint8_t>& b, uint64_t off, T v) {
  std::memcpy(b.data() + off, &v, sizeof v);
}

// A parsed file that can be patched and reassembled with a consistent tail.
struct Crafted {
  std::vector<uint8_t> b;
  format::Footer f;
  uint64_t foff = 0;

  explicit Crafted(std::vector<uint8_t> bytes) : b(std::move(bytes)) {
    const auto tail = Get<format::Tail>(b, b.size() - 48);
    foff = tail.footer_offset;
    Status s = format::ParseFooter(b.data() + foff, tail.footer_bytes, &f);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  uint64_t BlockOff(size_t i) const { return f.blocks[i].offset; }
  BlockHeader Header(size_t i) const { return Get<BlockHeader>(b, BlockOff(i)); }
  // Writes a block header and refreshes that block's checksum in the index.
  void SetHeader(size_t i, const BlockHeader& h) {
    Put(b, BlockOff(i), h);
    Rechecksum(i);
  }
  void Rechecksum(size_t i) { f.blocks[i].checksum = format::Checksum(b.data() + f.blocks[i].offset, f.blocks[i].length); }
  // Data section + BuildFooter(f) + a tail that matches the new footer.
  std::vector<uint8_t> Build() const { return WithFooterBytes(format::BuildFooter(f)); }
  std::vector<uint8_t> WithFooterBytes(const std::vector<uint8_t>& fb) const {
    std::vector<uint8_t> out(b.begin(), b.begin() + foff);
    out.insert(out.end(), fb.begin(), fb.end());
    auto tail = Get<format::Tail>(b, b.size() - 48);
    tail.footer_offset = foff;
    tail.footer_bytes = fb.size();
    tail.footer_checksum = format::Checksum(fb.data(), fb.size());
    tail.required_features = f.required_features;
    tail.version_major = f.version_major;
    tail.version_minor = f.version_minor;
    const auto* tp = reinterpret_cast<const uint8_t*>(&tail);
    out.insert(out.end(), tp, tp + sizeof tail);
    return out;
  }
};

class FormatErrors : public ::testing::Test {
 protected:
  TempDir dir;
  std::vector<uint8_t> base = BaseFile(dir);
  int n = 0;

  // Opens `bytes` (optionally verifying every block) and returns the status.
  Status OpenStatus(const std::vector<uint8_t>& bytes, bool verify_all = false) {
    const std::string path = dir.Path("case" + std::to_string(n++) + ".mqkv");
    WriteFile(path, bytes);
    auto s = Snapshot::Open(path, {.verify_all_blocks = verify_all});
    if (s.ok()) return Status::OK();
    Status st = s.status();
    EXPECT_EQ(st.file(), path) << "error does not name the file";
    EXPECT_NE(st.ToString().find(path), std::string::npos);
    return st;
  }
  void Expect(const std::vector<uint8_t>& bytes, StatusCode code, const std::string& sub, bool verify_all = false) {
    Status s = OpenStatus(bytes, verify_all);
    ASSERT_FALSE(s.ok()) << "accepted a bad file; expected: " << sub;
    EXPECT_EQ(s.code(), code) << s.ToString();
    EXPECT_NE(s.message().find(sub), std::string::npos) << "message \"" << s.message() << "\" lacks \"" << sub << "\"";
  }
  // A block-header check (steps 17-19): Open reads no block header and succeeds; the error comes
  // at the first access of `block`, through every accessor, naming the file, the block and
  // `offset`; tensors other than the block's stay readable (unless `others_bad`); verify_all_blocks
  // refuses the file at Open with the same error.
  void ExpectAtAccess(const std::vector<uint8_t>& bytes, size_t block, StatusCode code, const std::string& sub, uint64_t offset,
                      bool others_bad = false) {
    const std::string path = dir.Path("case" + std::to_string(n++) + ".mqkv");
    WriteFile(path, bytes);
    auto check = [&](const Status& st, const std::string& via) {
      ASSERT_FALSE(st.ok()) << via << " accepted a bad block header; expected: " << sub;
      EXPECT_EQ(st.code(), code) << via << ": " << st.ToString();
      EXPECT_NE(st.message().find(sub), std::string::npos) << via << ": message \"" << st.message() << "\" lacks \"" << sub << "\"";
      EXPECT_NE(st.message().find("block " + std::to_string(block)), std::string::npos) << via << ": " << st.ToString();
      EXPECT_EQ(st.file(), path) << via;
      EXPECT_EQ(st.offset(), std::optional<uint64_t>(offset)) << via << ": " << st.ToString();
    };
    auto s = Snapshot::Open(path);
    ASSERT_TRUE(s.ok()) << "block headers are checked on access, not at open: " << s.status().ToString();
    const Snapshot& snap = **s;
    ASSERT_LT(block, snap.blocks().size());
    const BlockInfo& bi = snap.blocks()[block];
    check(snap.DecodeF32(bi.tensor, bi.token_begin, bi.token_begin + bi.n_tokens).status(), "Decode");
    check(snap.BlockHeaderAt(block).status(), "BlockHeaderAt");
    check(snap.BlockHeaderAt(block).status(), "BlockHeaderAt (second call)");
    check(snap.VerifyBlock(block), "VerifyBlock");
    check(snap.ReadBlock(block).status(), "ReadBlock");
    if (block == snap.tensors()[bi.tensor].first_block) check(snap.TensorSpec(bi.tensor).status(), "TensorSpec");
    for (size_t t = 0; t < snap.tensors().size() && !others_bad; ++t)
      if (t != bi.tensor) {
        EXPECT_TRUE(snap.DecodeF32(t, 0, snap.tensors()[t].n_tokens).ok()) << "tensor " << t << " stays readable";
      }
    auto all = Snapshot::Open(path, {.verify_all_blocks = true});
    check(all.status(), "Open with verify_all_blocks");
  }
};

TEST_F(FormatErrors, BaseFileIsValid) {
  EXPECT_TRUE(OpenStatus(base, true).ok());
  Crafted c(base);
  EXPECT_EQ(c.Build(), base) << "Crafted must reassemble an untouched file byte for byte";
}

TEST_F(FormatErrors, BadLeadingMagic) {
  auto b = base;
  b[1] = 'X';
  Expect(b, StatusCode::kFormatError, "bad magic");
}

TEST_F(FormatErrors, BadTrailingMagic) {
  auto b = base;
  b.back() ^= 0x40;
  Expect(b, StatusCode::kFormatError, "bad trailing magic");
}

TEST_F(FormatErrors, NewerMajorRefusedWithVersion) {
  Crafted c(base);
  c.f.version_major = 2;
  c.f.version_minor = 3;
  auto b = c.Build();
  Put<uint16_t>(b, 8, 2);
  Put<uint16_t>(b, 10, 3);
  Expect(b, StatusCode::kUnsupported, "format version 2.3 is newer than this reader");
  // Only the file header newer: refused the same way before anything else is read.
  auto h = base;
  Put<uint16_t>(h, 8, 7);
  Expect(h, StatusCode::kUnsupported, "format version 7.");
}

// Issue 14, item 6: FORMAT.md §3.1 forbids NUL in a metadata key; step 12 checks it.
TEST_F(FormatErrors, MetadataKeyWithNulRefused) {
  Crafted c(base);
  c.f.model.metadata = {{std::string("a\0b", 3), "v"}};
  Expect(c.Build(), StatusCode::kFormatError, "metadata key contains a NUL byte");
}

TEST_F(FormatErrors, NewerMinorIsRead) {
  Crafted c(base);
  c.f.version_minor = 9;
  auto b = c.Build();
  Put<uint16_t>(b, 10, 9);
  EXPECT_TRUE(OpenStatus(b, true).ok());
}

TEST_F(FormatErrors, MajorZeroAndVersionDisagreements) {
  Crafted c(base);
  c.f.version_major = 0;
  auto b = c.Build();
  Put<uint16_t>(b, 8, 0);
  Expect(b, StatusCode::kFormatError, "major version 0");
  auto t = base;  // tail minor differs from the header
  Put<uint16_t>(t, t.size() - 48 + 34, 5);
  Expect(t, StatusCode::kFormatError, "version in tail differs");
  Crafted d(base);  // footer minor differs from header and tail
  d.f.version_minor = 4;
  auto fb = format::BuildFooter(d.f);
  d.f.version_minor = 0;
  Expect(d.WithFooterBytes(fb), StatusCode::kFormatError, "version in footer differs");
}

TEST_F(FormatErrors, UnknownRequiredFeatureNamesTheBit) {
  Crafted c(base);
  c.f.required_features |= 1ull << 9;
  Expect(c.Build(), StatusCode::kUnsupported, "feature(s) bit 9 unknown to this reader");
  Crafted d(base);
  d.f.required_features |= 1ull << 63 | 1ull << 7;  // bit 4 is fp8 since 1.1, bit 5 rans since 1.3, bit 6 rope_undo since 1.4
  Expect(d.Build(), StatusCode::kUnsupported, "bit 7|bit 63");
}

// Keys stored before RoPE (format 1.4; FORMAT.md section 8 step 14, CODECS.md "Keys before RoPE").
TEST_F(FormatErrors, RopeUndoTablesAreChecked) {
  ASSERT_EQ(Crafted(base).f.tensors[0].kind, Kind::kK);
  ASSERT_EQ(Crafted(base).f.tensors[1].kind, Kind::kV);
  auto with = [&](size_t tensor, RopeUndo r, bool declare = true) {
    Crafted c(base);
    c.f.tensors[tensor].rope = std::move(r);
    if (declare) c.f.required_features |= kFeatureRopeUndo;  // (readers gate on features, not the minor)
    return c;
  };
  const RopeUndo ok{RopeUndo::kNeox, {1.0, 0.1, 0.01, 0.001}};
  const Status good = OpenStatus(with(0, ok).Build());
  EXPECT_TRUE(good.ok()) << good.ToString();
  Expect(with(1, ok).Build(), StatusCode::kFormatError, "only key tensors are stored before RoPE");
  Expect(with(0, ok, false).Build(), StatusCode::kFormatError, "does not declare feature rope_undo");
  Expect(with(0, {RopeUndo::kNorm, {1.0, 1.5}}).Build(), StatusCode::kFormatError, "rope_undo.theta holds 1.500000, outside [0, 1]");
  Expect(with(0, {RopeUndo::kNorm, {1.0, std::nan("")}}).Build(), StatusCode::kFormatError, "outside [0, 1]");
  Expect(with(0, {RopeUndo::kNorm, {1, 1, 1, 1, 1}}).Build(), StatusCode::kFormatError, "rope_undo has 5 pairs for head_dim 8");
  Expect(with(0, {2, {1.0}}).Build(), StatusCode::kFormatError, "rope_undo.style 2 is unknown");
  Crafted few = with(0, ok);
  few.f.model.tokens = {1, 2, 3};
  few.f.model.positions = {0, 1, 2};
  Expect(few.Build(), StatusCode::kFormatError, "is stored before RoPE and has 6 rows, but the file records 3 positions");
}

TEST_F(FormatErrors, FeatureMismatchesAndUndeclaredFeatures) {
  Crafted c(base);  // footer declares hadamard, tail does not
  c.f.required_features = kFeatureHadamard;
  auto fb = format::BuildFooter(c.f);
  c.f.required_features = 0;
  Expect(c.WithFooterBytes(fb), StatusCode::kFormatError, "required features in footer differ from the tail");
  // A zstd block in a file that does not declare the zstd feature.
  Crafted z(BaseFile(dir, 3));
  ASSERT_EQ(z.Header(0).compression, 1);
  z.f.required_features = 0;
  ExpectAtAccess(z.Build(), 0, StatusCode::kFormatError, "block 0 uses feature(s) zstd that the file does not declare", z.BlockOff(0),
                 /*others_bad=*/true);  // every block is compressed
}

TEST_F(FormatErrors, FixedFieldsOfHeaderAndTail) {
  auto h = base;
  Put<uint32_t>(h, 12, 65);
  Expect(h, StatusCode::kFormatError, "file header size 65");
  auto r = base;
  r[40] = 1;
  Expect(r, StatusCode::kFormatError, "reserved file header bytes are not zero");
  auto t = base;
  Put<uint32_t>(t, t.size() - 48 + 36, 47);
  Expect(t, StatusCode::kFormatError, "tail size field is not 48");
}

TEST_F(FormatErrors, TruncationAtSeveralPoints) {
  Crafted c(base);
  for (uint64_t len : std::vector<uint64_t>{0, 8, 64, 111, 112, 200, c.BlockOff(3) + 10, c.foff, c.foff + 10, base.size() - 48,
                                            base.size() - 8, base.size() - 1}) {
    std::vector<uint8_t> b(base.begin(), base.begin() + len);
    Status s = OpenStatus(b);
    ASSERT_FALSE(s.ok()) << "truncated to " << len;
    EXPECT_EQ(s.code(), StatusCode::kFormatError) << s.ToString();
    if (len < 112) EXPECT_NE(s.message().find("shorter than"), std::string::npos) << s.message();
    else EXPECT_NE(s.message().find("truncated"), std::string::npos) << s.message();
  }
}

TEST_F(FormatErrors, FooterLocationOutOfBounds) {
  const uint64_t t = base.size() - 48;
  auto b = base;
  Put<uint64_t>(b, t, base.size() + 4096);  // past EOF
  Expect(b, StatusCode::kFormatError, "footer location");
  b = base;
  Put<uint64_t>(b, t, Get<uint64_t>(base, t) + 8);  // misaligned
  Expect(b, StatusCode::kFormatError, "footer location");
  b = base;
  Put<uint64_t>(b, t + 8, ~0ull);  // offset + bytes overflows
  Expect(b, StatusCode::kFormatError, "footer location");
  b = base;
  Put<uint64_t>(b, t, 0);  // inside the file header
  Expect(b, StatusCode::kFormatError, "footer location");
}

TEST_F(FormatErrors, FooterChecksumMismatch) {
  Crafted c(base);
  auto b = base;
  b[c.foff + 40] ^= 1;
  Expect(b, StatusCode::kChecksumMismatch, "footer checksum mismatch");
}

TEST_F(FormatErrors, FooterFailsFlatBufferVerification) {
  Crafted c(base);
  std::vector<uint8_t> fb(base.begin() + c.foff, base.end() - 48);
  Put<uint32_t>(fb, 0, 0x7FFFFFF0u);  // root table offset far outside the footer
  Expect(c.WithFooterBytes(fb), StatusCode::kFormatError, "footer FlatBuffer failed verification");
  // A vector length that runs past the end of the footer.
  auto g = std::vector<uint8_t>(base.begin() + c.foff, base.end() - 48);
  const auto* root = fb::GetSnapshot(g.data());
  const uint64_t vec = reinterpret_cast<const uint8_t*>(root->tokens()) - g.data();
  Put<uint32_t>(g, vec, 0x10000000u);
  Expect(c.WithFooterBytes(g), StatusCode::kFormatError, "failed verification");
  auto id = std::vector<uint8_t>(base.begin() + c.foff, base.end() - 48);
  id[5] = 'X';
  Expect(c.WithFooterBytes(id), StatusCode::kFormatError, "file identifier \"MQKV\"");
  Expect(c.WithFooterBytes({1, 2, 3}), StatusCode::kFormatError, "too small for a FlatBuffer");
}

TEST_F(FormatErrors, BlockOutOfBounds) {
  Crafted c(base);
  c.f.blocks[7].offset = c.foff;  // the last block would overlap the footer
  Expect(c.Build(), StatusCode::kFormatError, "extends past the data section");
  Crafted d(base);
  d.f.blocks[7].offset = 1ull << 62;
  Expect(d.Build(), StatusCode::kFormatError, "extends past the data section");
  Crafted e(base);
  e.f.blocks[0].length = 100;  // shorter than a block header
  Expect(e.Build(), StatusCode::kFormatError, "extends past the data section");
  Crafted g(base);
  g.f.blocks[7].length = ~0ull - 10;  // offset + length overflows
  Expect(g.Build(), StatusCode::kFormatError, "extends past the data section");
}

TEST_F(FormatErrors, OverlappingBlocks) {
  Crafted c(base);
  c.f.blocks[1].offset = c.f.blocks[0].offset;
  Expect(c.Build(), StatusCode::kFormatError, "block 1 overlaps the previous block");
  Crafted d(base);
  d.f.blocks[0].offset = 0;  // over the file header
  Expect(d.Build(), StatusCode::kFormatError, "overlaps the previous block or the file header");
}

TEST_F(FormatErrors, MisalignedBlock) {
  Crafted c(base);
  c.f.blocks[3].offset += 8;
  Expect(c.Build(), StatusCode::kFormatError, "block 3 is not 64-byte aligned");
}

TEST_F(FormatErrors, BlockChecksumMismatchOnDecodeAndVerify) {
  Crafted c(base);
  auto b = base;
  b[c.BlockOff(2) + 128 + 5] ^= 0x10;  // a payload byte of tensor 1's first block
  EXPECT_TRUE(OpenStatus(b).ok()) << "checksums are checked lazily";
  Expect(b, StatusCode::kChecksumMismatch, "block 2 (layer 0 v) checksum mismatch", /*verify_all=*/true);
  const std::string path = dir.Path("lazy.mqkv");
  WriteFile(path, b);
  auto s = Snapshot::Open(path);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE((*s)->DecodeF32(0, 0, 6).ok()) << "other tensors stay readable";
  EXPECT_TRUE((*s)->DecodeF32(1, 4, 6).ok()) << "rows in other blocks of the tensor stay readable";
  auto bad = (*s)->DecodeF32(1, 0, 6);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kChecksumMismatch);
  EXPECT_EQ(bad.status().offset(), c.BlockOff(2));
  EXPECT_EQ((*s)->VerifyBlock(2).code(), StatusCode::kChecksumMismatch);
  EXPECT_TRUE((*s)->VerifyBlock(3).ok());
}

TEST_F(FormatErrors, DimensionsWhoseProductOverflows) {
  Crafted c(base);
  c.f.tensors[0].n_tokens = 0xFFFFFFFFu;
  c.f.tensors[0].n_heads = 0xFFFF;
  c.f.tensors[0].head_dim = 0xFFFF;
  Expect(c.Build(), StatusCode::kFormatError, "dimensions overflow");
  Crafted d(base);
  d.f.tensors[0].n_heads = 0x10000;  // does not fit the block header's uint16
  Expect(d.Build(), StatusCode::kFormatError, "invalid shape");
  Crafted e(base);
  e.f.tensors[0].head_dim = 0;
  Expect(e.Build(), StatusCode::kFormatError, "invalid shape");
}

TEST_F(FormatErrors, TensorBlocksDoNotTile) {
  Crafted c(base);
  c.f.blocks[1].token_begin = 3;  // gap/overlap inside tensor 0
  Expect(c.Build(), StatusCode::kFormatError, "do not tile its token range");
  Crafted d(base);
  d.f.tensors[0].n_tokens = 7;  // blocks cover 6 of 7
  Expect(d.Build(), StatusCode::kFormatError, "cover 6 of its 7 tokens");
  Crafted e(base);
  e.f.tensors[3].n_blocks = 3;  // runs past the block index
  Expect(e.Build(), StatusCode::kFormatError, "block range outside the block index");
  Crafted g(base);
  g.f.blocks[2].tensor = 0;  // a block claimed by a tensor whose range does not hold it
  Expect(g.Build(), StatusCode::kFormatError, "does not belong to tensor");
  Crafted h(base);
  h.f.blocks[7].tensor = 9;
  Expect(h.Build(), StatusCode::kFormatError, "does not belong to tensor 3");
  Crafted z(base);  // a zero-token block
  z.f.blocks[1].n_tokens = 0;
  Expect(z.Build(), StatusCode::kFormatError, "do not tile");
}

TEST_F(FormatErrors, DuplicateTensorAndBadQueryPositions) {
  Crafted c(base);
  c.f.tensors[1].kind = Kind::kK;  // layer 0 K twice
  Expect(c.Build(), StatusCode::kFormatError, "appears twice");
  Crafted d(base);
  d.f.tensors[0].positions = {0, 1};
  Expect(d.Build(), StatusCode::kFormatError, "only query tensors carry positions");
  Crafted e(base);
  e.f.tensors[3].kind = Kind::kQ;  // Q without positions
  Expect(e.Build(), StatusCode::kFormatError, "query tensor needs one position per row");
  Crafted g(base);
  g.f.model.positions = {1, 2};  // 2 positions for 6 tokens
  Expect(g.Build(), StatusCode::kFormatError, "2 positions for 6 tokens");
}

TEST_F(FormatErrors, HeaderDisagreesWithIndex) {
  struct Case {
    std::function<void(BlockHeader&)> patch;
    std::string message;
    uint64_t at;  // offset of the error inside the block header
  };
  const std::vector<Case> cases = {
      {[](BlockHeader& h) { h.magic[3] = 'X'; }, "does not start with magic \"MQKB\"", 0},
      {[](BlockHeader& h) { h.header_bytes = 64; }, "block header size 64", 4},
      {[](BlockHeader& h) { h.layer = 5; }, "(layer/kind) does not match its tensor", 7},
      {[](BlockHeader& h) { h.kind = 1; }, "(layer/kind) does not match its tensor", 7},
      {[](BlockHeader& h) { h.token_begin = 1; }, "token range does not match the index", 12},
      {[](BlockHeader& h) { h.n_tokens = 3; }, "token range does not match the index", 12},
      {[](BlockHeader& h) { h.n_heads = 1; }, "shape does not match its tensor", 20},
      {[](BlockHeader& h) { h.stored_bytes += 64; }, "stored size does not match the index length", 64},
      {[](BlockHeader& h) { h.payload_bytes += 2; }, "payload size != stored size", 56},
      {[](BlockHeader& h) { h.bits = 8; }, "f16 block must have bits=16", 0},
      {[](BlockHeader& h) { h.group_size = 4; }, "non-zero quantization fields", 0},
      {[](BlockHeader& h) { h.parts[0].bytes -= 2; }, "part 0 holds", 72},
      {[](BlockHeader& h) { h.parts[3] = {0, 8}; }, "part 3 holds 8 bytes, codec needs 0", 72 + 3 * 8},
      {[](BlockHeader& h) { h.codec = 0; }, "f32 block must have bits=32", 0},
      {[](BlockHeader& h) {
         h.codec = 0;
         h.bits = 32;
         h.n_tokens = 2;
         h.n_heads = 2;
         h.head_dim = 8;
       },
       "token range does not match", 12},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.message);
    Crafted c(base);
    BlockHeader h = c.Header(0);
    k.patch(h);
    c.SetHeader(0, h);
    ExpectAtAccess(c.Build(), 0, StatusCode::kFormatError, k.message, c.BlockOff(0) + k.at);
  }
  // A block whose codec id differs from the codec named by its tensor in the index.
  Crafted c(base);
  c.f.tensors[0].codec = "bf16";
  ExpectAtAccess(c.Build(), 0, StatusCode::kFormatError, "block codec f16 does not match its tensor's codec \"bf16\"", c.BlockOff(0) + 6);
  Crafted d(base);
  d.f.tensors[0].codec = "f16x";
  ExpectAtAccess(d.Build(), 0, StatusCode::kFormatError, "does not match its tensor's codec", d.BlockOff(0) + 6);
}

TEST_F(FormatErrors, CorruptBlockHeaderIsFoundOnAccessAndOtherBlocksStayReadable) {
  // Flip a bit of block 2's layer field (tensor 1 = layer 0 V, rows 0..3) without fixing its
  // checksum: Open reads no block header, the header check (17) runs before the checksum (21),
  // and the blocks around it stay readable.
  Crafted c(base);
  auto b = base;
  b[c.BlockOff(2) + 8] ^= 0x04;
  EXPECT_TRUE(OpenStatus(b).ok()) << "block headers are checked on first access";
  const std::string path = dir.Path("lazy_header.mqkv");
  WriteFile(path, b);
  auto s = Snapshot::Open(path);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE((*s)->DecodeF32(0, 0, 6).ok()) << "other tensors stay readable";
  EXPECT_TRUE((*s)->DecodeF32(1, 4, 6).ok()) << "rows in other blocks of the tensor stay readable";
  EXPECT_TRUE((*s)->BlockHeaderAt(3).ok());
  EXPECT_TRUE((*s)->VerifyBlock(3).ok());
  auto bad = (*s)->DecodeF32(1, 0, 6);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kFormatError) << "the header check comes before the checksum";
  EXPECT_NE(bad.status().message().find("block 2: block header (layer/kind) does not match its tensor"), std::string::npos)
      << bad.status().ToString();
  EXPECT_EQ(bad.status().offset(), c.BlockOff(2) + 7);
  EXPECT_EQ(bad.status().file(), path);
  EXPECT_EQ((*s)->VerifyBlock(2).code(), StatusCode::kFormatError);
  EXPECT_EQ((*s)->BlockHeaderAt(2).status().ToString(), bad.status().ToString()) << "the same error at every access";
  EXPECT_EQ((*s)->BlockHeaderAt(8).status().code(), StatusCode::kOutOfRange);
  // verify_all_blocks checks every header (then every checksum) at open, and refuses the file.
  Expect(b, StatusCode::kFormatError, "block 2: block header (layer/kind) does not match its tensor", /*verify_all=*/true);
  // A good file: the accessor gives the header as stored.
  const std::string good = dir.Path("good.mqkv");
  WriteFile(good, base);
  auto g = Snapshot::Open(good);
  ASSERT_TRUE(g.ok());
  for (size_t i = 0; i < (*g)->blocks().size(); ++i) {
    auto h = (*g)->BlockHeaderAt(i);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    EXPECT_EQ(std::memcmp(*h, base.data() + c.BlockOff(i), sizeof(BlockHeader)), 0) << "block " << i;
    EXPECT_EQ(*h, *(*g)->BlockHeaderAt(i)) << "cached: the same pointer on every call";
  }
}

TEST_F(FormatErrors, NonCanonicalPartLayout) {
  // Move the codes part of block 0 to offset 8 and grow the payload to hold it: well inside the
  // payload, aligned, no overlap, but not where the canonical layout puts it.
  Crafted c(base);
  BlockHeader h = c.Header(0);
  ASSERT_EQ(h.parts[0].offset, 0u);
  ASSERT_EQ(c.f.blocks[0].length % 64, 0u) << "block 0 must end on a 64 boundary for this patch";
  const uint64_t off = c.BlockOff(0);
  std::vector<uint8_t> b(c.b.begin(), c.b.begin() + off + 128);
  b.insert(b.end(), 8, 0);  // 8 bytes before the codes part
  b.insert(b.end(), c.b.begin() + off + 128, c.b.begin() + off + c.f.blocks[0].length);
  b.insert(b.end(), 56, 0);  // pad to 64
  const uint64_t shift = 64;
  b.insert(b.end(), c.b.begin() + off + c.f.blocks[0].length, c.b.end());
  c.b = b;
  c.foff += shift;
  for (size_t i = 1; i < c.f.blocks.size(); ++i) c.f.blocks[i].offset += shift;
  h.parts[0].offset = 8;
  h.payload_bytes += 8;
  h.stored_bytes += 8;
  c.f.blocks[0].length += 8;
  c.SetHeader(0, h);
  ExpectAtAccess(c.Build(), 0, StatusCode::kFormatError, "part 0 at payload offset 8, the canonical layout puts it at 0", c.BlockOff(0) + 72);
}

TEST_F(FormatErrors, ReservedBlockHeaderBytes) {
  Crafted c(base);
  BlockHeader h = c.Header(5);
  h.reserved0[3] = 0x80;
  c.SetHeader(5, h);
  ExpectAtAccess(c.Build(), 5, StatusCode::kFormatError, "reserved block header bytes are not zero", c.BlockOff(5) + 52);
  // Format 1.3's code_coding (offset 49) and levels (offset 50).
  for (int field : {49, 50}) {
    Crafted d(base);
    h = d.Header(5);
    (field == 49 ? h.code_coding : reinterpret_cast<uint8_t&>(h.levels)) = field == 49 ? 2 : 7;
    d.SetHeader(5, h);
    ExpectAtAccess(d.Build(), 5, StatusCode::kFormatError, field == 49 ? "unknown code coding 2" : "in a block with packed codes",
                   d.BlockOff(5) + field);
  }
}

TEST_F(FormatErrors, UnknownCodecAndCompression) {
  Crafted c(base);
  BlockHeader h = c.Header(0);
  h.codec = 200;
  c.SetHeader(0, h);
  ExpectAtAccess(c.Build(), 0, StatusCode::kUnsupported, "codec id 200, unknown to this reader", c.BlockOff(0) + 6);
  Crafted d(base);
  h = d.Header(0);
  h.compression = 2;
  d.SetHeader(0, h);
  ExpectAtAccess(d.Build(), 0, StatusCode::kFormatError, "unknown compression 2", d.BlockOff(0) + 48);
}

TEST_F(FormatErrors, CompressedBlockClaimingHugeDecodedSize) {
  Crafted c(BaseFile(dir, 3));
  BlockHeader h = c.Header(0);
  ASSERT_EQ(h.compression, 1);
  h.payload_bytes = 3ull << 30;  // 3 GiB from a few dozen stored bytes
  c.SetHeader(0, h);
  ExpectAtAccess(c.Build(), 0, StatusCode::kFormatError, "beyond the 1024:1 bound", c.BlockOff(0) + 56);
  Crafted d(BaseFile(dir, 3));
  h = d.Header(0);
  h.payload_bytes = 5ull << 30;
  d.SetHeader(0, h);
  ExpectAtAccess(d.Build(), 0, StatusCode::kFormatError, "exceeds 4 GiB", d.BlockOff(0) + 56);
}

TEST_F(FormatErrors, CorruptZstdFrameUnderAValidChecksum) {
  Crafted c(BaseFile(dir, 3));
  ASSERT_EQ(c.Header(0).compression, 1);
  c.b[c.BlockOff(0) + 128] ^= 0xFF;  // zstd frame magic
  c.Rechecksum(0);
  const std::string path = dir.Path("zstd_bad.mqkv");
  WriteFile(path, c.Build());
  auto s = Snapshot::Open(path, {.verify_all_blocks = true});
  ASSERT_TRUE(s.ok()) << "the checksum matches; the frame is checked when decoded";
  auto r = (*s)->DecodeF32(0, 0, 6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFormatError);
  EXPECT_NE(r.status().message().find("not exactly one zstd frame"), std::string::npos) << r.status().ToString();
  EXPECT_TRUE((*s)->DecodeF32(1, 0, 6).ok());
}

// Issue 14, item 5 (FORMAT.md §2.6): a frame must declare its content size, and from 1.2 carry a
// content checksum; frames without the checksum stay readable in 1.0/1.1 files.
TEST_F(FormatErrors, ZstdFrameMustDeclareSizeAndChecksum) {
  Crafted c(BaseFile(dir, 3));
  ASSERT_EQ(c.f.version_minor, 2) << "a file with zstd blocks is a 1.2 file";
  BlockHeader h = c.Header(0);
  ASSERT_EQ(h.compression, 1);
  ASSERT_TRUE(c.b[c.BlockOff(0) + 128 + 4] & 0x04) << "the writer sets the content-checksum flag";
  std::vector<uint8_t> payload(h.payload_bytes);
  ASSERT_EQ(ZSTD_decompress(payload.data(), payload.size(), c.b.data() + c.BlockOff(0) + 128, h.stored_bytes), payload.size());
  // Re-stores block 0 as `frame` (never longer than the original: the padding absorbs the rest).
  auto with_frame = [&](bool checksum, bool content_size, uint16_t minor) {
    Crafted d = c;
    std::vector<uint8_t> frame(ZSTD_compressBound(payload.size()));
    ZSTD_CCtx* cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, checksum ? 1 : 0);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, content_size ? 1 : 0);
    const size_t n = ZSTD_compress2(cc, frame.data(), frame.size(), payload.data(), payload.size());
    ZSTD_freeCCtx(cc);
    EXPECT_FALSE(ZSTD_isError(n));
    EXPECT_LE(n, h.stored_bytes);
    std::fill(d.b.begin() + d.BlockOff(0) + 128, d.b.begin() + d.BlockOff(0) + 128 + h.stored_bytes, 0);
    std::copy(frame.begin(), frame.begin() + n, d.b.begin() + d.BlockOff(0) + 128);
    BlockHeader nh = h;
    nh.stored_bytes = n;
    d.f.blocks[0].length = 128 + n;
    d.SetHeader(0, nh);
    d.f.version_minor = minor;
    auto bytes = d.Build();
    Put<uint16_t>(bytes, 10, minor);
    return bytes;
  };
  auto refused = [&](const std::vector<uint8_t>& bytes, const std::string& sub, uint64_t offset) {
    const std::string path = dir.Path("zstd_case" + std::to_string(n++) + ".mqkv");
    WriteFile(path, bytes);
    auto s = Snapshot::Open(path, {.verify_all_blocks = true});
    ASSERT_TRUE(s.ok()) << "the block checksum matches; the frame is checked when read: " << s.status().ToString();
    auto r = (*s)->DecodeF32(0, 0, 6);
    ASSERT_FALSE(r.ok()) << sub;
    EXPECT_EQ(r.status().code(), StatusCode::kFormatError);
    EXPECT_NE(r.status().message().find(sub), std::string::npos) << r.status().ToString();
    EXPECT_EQ(r.status().file(), path);
    EXPECT_EQ(r.status().offset(), std::optional<uint64_t>(offset)) << r.status().ToString();
    EXPECT_TRUE((*s)->DecodeF32(1, 0, 6).ok()) << "other tensors stay readable";
  };
  refused(with_frame(false, true, 2), "zstd frame has no content checksum (required from format 1.2)", c.BlockOff(0) + 128 + 4);
  refused(with_frame(true, false, 2), "zstd frame does not declare its content size", c.BlockOff(0) + 128);
  // The same checksum-less frame in a 1.1 file (written before 1.2) is read.
  const std::string path = dir.Path("zstd_1_1.mqkv");
  WriteFile(path, with_frame(false, true, 1));
  auto s = Snapshot::Open(path, {.verify_all_blocks = true});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto r = (*s)->DecodeF32(0, 0, 6);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
}

// Issue 14, item 3 (CODECS.md "Non-finite metadata"): a low-bit block whose fp16 metadata or
// codebook levels are not finite is refused before any row is decoded, naming the block.
TEST_F(FormatErrors, NonFiniteMetadataRefused) {
  struct Case {
    const char* codec;
    int part;
    uint32_t at;     // byte inside the part
    uint32_t bytes;  // 2: fp16 0x7C00 (inf) / 0x7E00 (NaN); 4: fp32 NaN
    uint32_t value;
    const char* message;
  };
  for (const Case& k : std::vector<Case>{
           {"affine:bits=4,group=8", kPartScales, 2, 2, 0x7C00, "scale of group 1 is not finite (fp16 0x7C00)"},
           {"affine:bits=4,group=8", kPartMins, 0, 2, 0xFE00, "minimum of group 0 is not finite (fp16 0xFE00)"},
           {"affine:bits=3,group=8,meta=4", kPartRanges, 6, 2, 0x7C00, "shared range of field/column pair 1 is not finite"},
           {"codebook:bits=1,levels=-1/1", kPartCodebook, 4, 4, 0x7FC00000u, "codebook level 1 is not finite"},
       }) {
    const std::string path = dir.Path(std::string("nonfinite") + std::to_string(n++) + ".mqkv");
    {
      auto w = Writer::Create(path, {.zstd_level = 0, .max_block_tokens = 0, .fsync = false});
      ASSERT_TRUE(w.ok());
      std::vector<float> rows(6 * 2 * 8);
      for (size_t i = 0; i < rows.size(); ++i) rows[i] = float(int(i % 13) - 6) / 4.0f;
      for (Kind kind : {Kind::kK, Kind::kV}) {
        TensorDesc d{.layer = 0, .kind = kind, .n_heads = 2, .head_dim = 8, .n_tokens = 6, .positions = {}, .source_dtype = "", .rope = {}};
        ASSERT_TRUE((*w)->AddTensor(d, rows.data(), *CodecSpec::Parse(k.codec)).ok()) << k.codec;
      }
      ASSERT_TRUE((*w)->Finish().ok());
    }
    Crafted c(ReadFile(path));
    const BlockHeader h = c.Header(0);
    ASSERT_GE(h.parts[k.part].bytes, k.at + k.bytes) << k.codec;
    std::memcpy(c.b.data() + c.BlockOff(0) + 128 + h.parts[k.part].offset + k.at, &k.value, k.bytes);
    c.Rechecksum(0);
    WriteFile(path, c.Build());
    auto s = Snapshot::Open(path, {.verify_all_blocks = true});
    ASSERT_TRUE(s.ok()) << "the checksum matches; the payload is checked when the block is read: " << s.status().ToString();
    for (int again = 0; again < 2; ++again) {
      auto r = (*s)->DecodeF32(0, 0, 6);
      ASSERT_FALSE(r.ok()) << k.codec << ": " << k.message;
      EXPECT_EQ(r.status().code(), StatusCode::kFormatError);
      EXPECT_NE(r.status().message().find(k.message), std::string::npos) << r.status().ToString();
      EXPECT_NE(r.status().message().find("block 0"), std::string::npos) << r.status().ToString();
      EXPECT_EQ(r.status().file(), path);
      EXPECT_EQ(r.status().offset(), std::optional<uint64_t>(c.BlockOff(0)));
    }
    EXPECT_TRUE((*s)->DecodeF32(1, 0, 6).ok()) << "the other tensor stays readable";
  }
}

TEST_F(FormatErrors, NotAFile) {
  auto missing = Snapshot::Open(dir.Path("missing.mqkv"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kIoError);
  EXPECT_NE(missing.status().ToString().find("missing.mqkv"), std::string::npos);
  auto d = Snapshot::Open(dir.dir().string());
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kIoError);
  EXPECT_NE(d.status().message().find("not a regular file"), std::string::npos);
}

}  // namespace
