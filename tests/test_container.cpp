// Container round trips and reader checks (spec/FORMAT.md).
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <type_traits>

#include "mqkv/mqkv.h"
#include "support.h"

using namespace mqkv;
using mqkv::testing::TempDir;

namespace {

ModelInfo SmallModel() {
  ModelInfo m;
  m.architecture = "llama";
  m.n_layer = 2;
  m.n_head = 4;
  m.n_head_kv = 2;
  m.head_dim_k = m.head_dim_v = 16;
  m.rope_type = "norm";
  m.rope_base = 10000.0f;
  m.k_rope = KRope::kPostRope;
  m.source_engine = "test";
  m.tokens = {1, 2, 3, 4, 5};
  m.positions = {0, 1, 2, 3, 4};
  m.metadata = {{"b", "2"}, {"a", "1"}};
  return m;
}

}  // namespace

TEST(Container, RoundTripRawCodecs) {
  TempDir dir;
  for (const char* codec : {"f32", "f16", "bf16"}) {
    const std::string path = dir.Path(std::string("t_") + codec + ".mqkv");
    auto spec = CodecSpec::Parse(codec);
    ASSERT_TRUE(spec.ok());
    std::vector<float> rows = mqkv::testing::RandomRows(5 * 2 * 16, 7);
    for (auto& x : rows) x = codec == std::string("f32") ? x : codec == std::string("f16") ? round_to_f16(x) : bf16_to_f32(f32_to_bf16(x));
    {
      auto w = Writer::Create(path);
      ASSERT_TRUE(w.ok()) << w.status().ToString();
      (*w)->SetModel(SmallModel());
      for (uint32_t layer = 0; layer < 2; ++layer)
        for (Kind k : {Kind::kK, Kind::kV}) {
          TensorDesc d;
          d.layer = layer;
          d.kind = k;
          d.n_heads = 2;
          d.head_dim = 16;
          d.n_tokens = 5;
          ASSERT_TRUE((*w)->AddTensor(d, rows.data(), *spec).ok());
        }
      ASSERT_TRUE((*w)->Finish().ok());
    }
    auto s = Snapshot::Open(path, {.verify_all_blocks = true});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_EQ((*s)->tensors().size(), 4u);
    ModelInfo want = SmallModel();
    std::sort(want.metadata.begin(), want.metadata.end());
    EXPECT_EQ((*s)->model(), want);
    auto got = (*s)->DecodeF32(3, 0, 5);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(*got, rows);
    auto part = (*s)->DecodeF32(0, 2, 4);
    ASSERT_TRUE(part.ok());
    EXPECT_EQ(*part, std::vector<float>(rows.begin() + 2 * 32, rows.begin() + 4 * 32));
  }
}

// Splitting a tensor into blocks never quantizes a row the spec keeps in fp16: all sink rows
// land in the first block and all residual rows in the last, whatever max_block_tokens is.
TEST(Container, SplitKeepsSinkAndResidualRowsInFp16) {
  TempDir dir;
  const std::string path = dir.Path("split.mqkv");
  const uint32_t n = 200, heads = 2, dim = 32;
  std::vector<float> rows = mqkv::testing::RandomRows(uint64_t(n) * heads * dim, 11);
  auto spec = CodecSpec::Parse("affine:bits=2,group=32,sinks=3,residual=50");
  ASSERT_TRUE(spec.ok());
  {
    WriterOptions wo;
    wo.max_block_tokens = 20;
    auto w = Writer::Create(path, wo);
    ASSERT_TRUE(w.ok());
    TensorDesc d;
    d.n_heads = heads;
    d.head_dim = dim;
    d.n_tokens = n;
    ASSERT_TRUE((*w)->AddTensor(d, rows.data(), *spec).ok());
    ASSERT_TRUE((*w)->Finish().ok());
  }
  auto s = Snapshot::Open(path);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const auto& blocks = (*s)->blocks();
  ASSERT_EQ(blocks.size(), 8u);  // quantized middle of 147 rows cut every 20 rows
  auto first = (*s)->BlockHeaderAt(0), last = (*s)->BlockHeaderAt(blocks.size() - 1);
  ASSERT_TRUE(first.ok() && last.ok());
  EXPECT_EQ((*first)->n_sink, 3u);
  EXPECT_EQ((*last)->n_residual, 50u);
  auto got = (*s)->DecodeF32(0, 0, n);
  ASSERT_TRUE(got.ok());
  const uint64_t row = heads * dim;
  for (uint64_t i = 0; i < n * row; ++i) {
    const uint64_t r = i / row;
    if (r < 3 || r >= n - 50) {
      ASSERT_EQ((*got)[i], round_to_f16(rows[i])) << "row " << r;
    }
  }
}

// Block headers are checked and cached on first access; several threads may make that first
// access at once (bench "threads/" does). Every thread must see the same checked header and
// decode the same bits as a single-threaded reader. (A data race here is what TSan would report;
// the assertions catch a header read before it was published.)
TEST(Container, ConcurrentFirstAccessOfBlocks) {
  TempDir dir;
  const std::string path = dir.Path("threads.mqkv");
  const uint32_t n = 96, heads = 2, dim = 16;
  const std::vector<float> rows = mqkv::testing::RandomRows(uint64_t(n) * heads * dim, 11);
  {
    WriterOptions wo;
    wo.max_block_tokens = 2;  // 48 blocks per tensor
    wo.fsync = false;
    auto w = Writer::Create(path, wo);
    ASSERT_TRUE(w.ok());
    for (uint32_t l = 0; l < 4; ++l) {
      TensorDesc d;
      d.layer = l;
      d.n_heads = heads;
      d.head_dim = dim;
      d.n_tokens = n;
      ASSERT_TRUE((*w)->AddTensor(d, rows.data(), *CodecSpec::Parse("affine:bits=3,group=16")).ok());
    }
    ASSERT_TRUE((*w)->Finish().ok());
  }
  auto ref = Snapshot::Open(path);
  ASSERT_TRUE(ref.ok());
  std::vector<std::vector<float>> want;
  for (size_t t = 0; t < (*ref)->tensors().size(); ++t) want.push_back((*ref)->DecodeF32(t, 0, n).value());
  for (int round = 0; round < 4; ++round) {
    auto s = Snapshot::Open(path);
    ASSERT_TRUE(s.ok());
    const Snapshot& snap = **s;
    constexpr int kThreads = 8;
    std::vector<std::vector<const BlockHeader*>> seen(kThreads);
    std::vector<int> bad(kThreads, 0);
    std::vector<std::thread> pool;
    std::atomic<int> arrived{0};  // start together, so first accesses overlap
    for (int i = 0; i < kThreads; ++i)
      pool.emplace_back([&, i] {
        arrived.fetch_add(1);
        while (arrived.load() < kThreads) std::this_thread::yield();
        for (size_t k = 0; k < snap.tensors().size(); ++k) {
          const size_t t = (k + i) % snap.tensors().size();
          auto got = snap.DecodeF32(t, 0, n);
          if (!got.ok() || std::memcmp(got->data(), want[t].data(), want[t].size() * 4) != 0) ++bad[i];
        }
        for (size_t b = 0; b < snap.blocks().size(); ++b) {
          auto h = snap.BlockHeaderAt(b);
          seen[i].push_back(h.ok() ? *h : nullptr);
        }
      });
    for (auto& th : pool) th.join();
    for (int i = 0; i < kThreads; ++i) {
      EXPECT_EQ(bad[i], 0) << "thread " << i;
      ASSERT_EQ(seen[i].size(), snap.blocks().size());
      for (size_t b = 0; b < snap.blocks().size(); ++b) {
        ASSERT_NE(seen[i][b], nullptr);
        EXPECT_EQ(seen[i][b], seen[0][b]) << "one cached header per block";
        EXPECT_EQ(std::memcmp(seen[i][b], snap.BlockBytes(b), sizeof(BlockHeader)), 0);
      }
    }
  }
}

// Issue 15: the public API reports errors as values and cannot dangle.
static_assert(!std::is_copy_constructible_v<mqkv::BlockData> && std::is_move_constructible_v<mqkv::BlockData>,
              "a copied BlockData would point into its source's owned buffer");
TEST(PublicApi, BlockBytesOutOfRangeIsNullNotAThrow) {
  mqkv::testing::TempDir dir;
  const std::string path = dir.Path("one.mqkv");
  auto w = mqkv::Writer::Create(path, {.zstd_level = 3, .max_block_tokens = 0, .fsync = false});
  ASSERT_TRUE(w.ok());
  std::vector<float> rows(4 * 8, 0.25f);
  mqkv::TensorDesc d{.layer = 0, .kind = mqkv::Kind::kK, .n_heads = 1, .head_dim = 8, .n_tokens = 4, .positions = {}, .source_dtype = "", .rope = {}};
  ASSERT_TRUE((*w)->AddTensor(d, rows.data(), *mqkv::CodecSpec::Parse("f16")).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  auto s = mqkv::Snapshot::Open(path);
  ASSERT_TRUE(s.ok());
  EXPECT_NE((*s)->BlockBytes(0), nullptr);
  EXPECT_EQ((*s)->BlockBytes(1), nullptr);
  EXPECT_EQ((*s)->BlockBytes(size_t(-1)), nullptr);
  auto a = (*s)->ReadBlock(0);  // zstd: the payload lives in `owned`
  ASSERT_TRUE(a.ok());
  mqkv::BlockData moved = std::move(*a);
  EXPECT_EQ(moved.view.payload, moved.owned.data());
}

// Snapshot::Decode on several threads writes the same bytes as on one, for every thread count,
// row range (inside one block, across blocks, starting mid group row) and output type; errors
// are the single-threaded call's.
TEST(Container, ThreadedDecodeEqualsOneThread) {
  TempDir dir;
  const std::string path = dir.Path("threads.mqkv");
  const uint32_t n = 1000, heads = 2, dim = 64;
  std::vector<float> rows = mqkv::testing::RandomRows(uint64_t(n) * heads * dim, 29);
  {
    WriterOptions wo;
    wo.max_block_tokens = 96;
    auto w = Writer::Create(path, wo);
    ASSERT_TRUE(w.ok());
    TensorDesc d;
    d.n_heads = heads;
    d.head_dim = dim;
    d.n_tokens = n;
    ASSERT_TRUE((*w)->AddTensor(d, rows.data(), *CodecSpec::Parse("hadamard_affine_four_level_2bit_g64_meta8")).ok());
    d.layer = 1;
    ASSERT_TRUE((*w)->AddTensor(d, rows.data(), *CodecSpec::Parse("affine:bits=3,group=16,axis=channel,sinks=4")).ok());
    ASSERT_TRUE((*w)->Finish().ok());
  }
  auto s = Snapshot::Open(path);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const uint64_t row = heads * dim;
  for (size_t t = 0; t < 2; ++t)
    for (DType out : {DType::kF32, DType::kF16, DType::kBF16})
      for (auto [a, b] : {std::pair<uint32_t, uint32_t>{0, n}, {5, 77}, {13, 900}, {500, 501}, {999, 1000}}) {
        const uint64_t bytes = uint64_t(b - a) * row * DTypeSize(out);
        std::vector<uint8_t> one(bytes), many(bytes);
        ASSERT_TRUE((*s)->Decode(t, a, b, out, one.data()).ok());
        for (unsigned th : {0u, 2u, 3u, 7u}) {
          std::fill(many.begin(), many.end(), 0xA5);
          ASSERT_TRUE((*s)->Decode(t, a, b, out, many.data(), Backend::kAuto, th).ok());
          ASSERT_EQ(one, many) << "tensor " << t << " rows [" << a << ", " << b << ") threads " << th;
        }
      }
  std::vector<uint8_t> buf(row * 4 * n);
  EXPECT_EQ((*s)->Decode(0, 10, n + 1, DType::kF32, buf.data(), Backend::kAuto, 2).code(), StatusCode::kOutOfRange);
  EXPECT_EQ((*s)->Decode(5, 0, 1, DType::kF32, buf.data(), Backend::kAuto, 2).code(), StatusCode::kOutOfRange);
}
