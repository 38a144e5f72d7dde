// Container round trips and reader checks (spec/FORMAT.md).
#include <gtest/gtest.h>

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
