// mqverify end to end: JSON shape, exit codes, corruption detection.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "mqkv/mqkv.h"
#include "support.h"

using namespace mqkv;
using mqkv::testing::TempDir;

namespace {

const std::string kTool = std::string(MQKV_BINARY_DIR) + "/tools/mqverify";

struct Outcome {
  int code = -1;
  std::string out, err;
};

std::string Quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

Outcome Exec(const TempDir& dir, const std::vector<std::string>& args, const std::string& tool = kTool) {
  std::string cmd = Quote(tool);
  for (const std::string& a : args) {
    cmd += ' ';
    cmd += Quote(a);
  }
  const std::string out = dir.Path("stdout.txt"), err = dir.Path("stderr.txt");
  cmd += " >" + Quote(out) + " 2>" + Quote(err);
  Outcome r;
  const int st = std::system(cmd.c_str());
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  auto slurp = [](const std::string& p) {
    std::vector<uint8_t> b = mqkv::testing::ReadFile(p);
    return std::string(b.begin(), b.end());
  };
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

// A strict minimal JSON checker (RFC 8259 grammar, no semantics): true when `s` is exactly
// one JSON value with optional surrounding whitespace.
class JsonChecker {
 public:
  explicit JsonChecker(const std::string& s) : s_(s) {}
  bool Valid() {
    Ws();
    if (!Value()) return false;
    Ws();
    return i_ == s_.size();
  }

 private:
  void Ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool Lit(const char* w) {
    const size_t n = std::strlen(w);
    if (s_.compare(i_, n, w) != 0) return false;
    i_ += n;
    return true;
  }
  bool String() {
    if (i_ >= s_.size() || s_[i_] != '"') return false;
    for (++i_; i_ < s_.size(); ++i_) {
      const unsigned char c = s_[i_];
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (++i_ >= s_.size()) return false;
        if (s_[i_] == 'u') {
          for (int k = 0; k < 4; ++k)
            if (++i_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_]))) return false;
        } else if (!std::strchr("\"\\/bfnrt", s_[i_])) {
          return false;
        }
      }
    }
    return false;
  }
  bool Number() {
    const size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    while (i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || std::strchr(".eE+-", s_[i_]))) ++i_;
    return i_ > start && std::isdigit(static_cast<unsigned char>(s_[i_ - 1]));
  }
  bool Value() {
    if (++depth_ > 64 || i_ >= s_.size()) return false;
    bool ok;
    const char c = s_[i_];
    if (c == '{') ok = Container('}', true);
    else if (c == '[') ok = Container(']', false);
    else if (c == '"') ok = String();
    else if (c == 't') ok = Lit("true");
    else if (c == 'f') ok = Lit("false");
    else if (c == 'n') ok = Lit("null");
    else ok = Number();
    --depth_;
    return ok;
  }
  bool Container(char close, bool object) {
    ++i_;
    Ws();
    if (i_ < s_.size() && s_[i_] == close) return ++i_, true;
    for (;;) {
      Ws();
      if (object) {
        if (!String()) return false;
        Ws();
        if (i_ >= s_.size() || s_[i_++] != ':') return false;
        Ws();
      }
      if (!Value()) return false;
      Ws();
      if (i_ >= s_.size()) return false;
      if (s_[i_] == close) return ++i_, true;
      if (s_[i_++] != ',') return false;
    }
  }
  const std::string& s_;
  size_t i_ = 0;
  int depth_ = 0;
};

bool Has(const std::string& json, const std::string& key) { return json.find("\"" + key + "\":") != std::string::npos; }

KvSet MakeSet(uint32_t n_tokens) {
  KvSet set;
  set.model.architecture = "llama\x1b[31m";  // a terminal escape from the file must not reach the terminal raw
  set.model.n_layer = 2;
  set.model.n_head = 4;
  set.model.n_head_kv = 2;
  set.model.head_dim_k = set.model.head_dim_v = 32;
  for (uint32_t l = 0; l < 2; ++l)
    for (Kind k : {Kind::kK, Kind::kV}) {
      KvTensor t;
      t.desc = {l, k, 2, 32, n_tokens, {}, "f32", {}};
      t.data = mqkv::testing::RandomRows(uint64_t(n_tokens) * 2 * 32, 100 + l * 2 + uint32_t(k));
      set.tensors.push_back(std::move(t));
    }
  return set;
}

void Write(const KvSet& set, const std::string& path, const char* codec) {
  WriteOptions o;
  o.k_codec = o.v_codec = CodecSpec::Parse(codec).value();
  o.writer.fsync = false;
  Status s = WriteKvSet(set, path, FileFormat::kMqkv, o);
  ASSERT_TRUE(s.ok()) << s.ToString();
}

class MqverifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(kTool)) << kTool << " is missing: build the mqverify target first";
  }
  TempDir dir;
};

}  // namespace

TEST_F(MqverifyTest, JsonReportsAccountingAndBackends) {
  const std::string f = dir.Path("a.mqkv");
  Write(MakeSet(64), f, "f16");
  Outcome r = Exec(dir, {f, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(JsonChecker(r.out).Valid()) << r.out;
  for (const char* k : {"file", "file_bytes", "checksums_ok", "tensors", "total", "modeled_bits_per_dim", "actual_bits_per_dim",
                        "breakdown", "codes", "group_meta", "shared_ranges", "fp16_rows", "codebook", "block_headers", "padding",
                        "footer_index", "excess_bits_per_dim", "excess_percent", "backends", "backends_ok", "accounting_ok",
                        "queries_in_file", "excluded_from_total"})
    EXPECT_TRUE(Has(r.out, k)) << k;
  EXPECT_NE(r.out.find("\"checksums_ok\":true"), std::string::npos);
  EXPECT_NE(r.out.find("\"modeled_bits_per_dim\":16,"), std::string::npos);
  EXPECT_NE(r.out.find("\"backend\":\"scalar\",\"available\":true"), std::string::npos);
  EXPECT_NE(r.out.find("\"fidelity\":null"), std::string::npos);
  EXPECT_NE(r.out.find("\"file_bytes\":" + std::to_string(std::filesystem::file_size(f))), std::string::npos);
  // Human form works too and says the excess is explained.
  Outcome h = Exec(dir, {f});
  ASSERT_EQ(h.code, 0) << h.err;
  EXPECT_NE(h.out.find("explained"), std::string::npos) << h.out;
}

TEST_F(MqverifyTest, FidelityAgainstReference) {
  const KvSet set = MakeSet(48);
  const std::string ref = dir.Path("ref.mqkv"), f = dir.Path("b.mqkv");
  Write(set, ref, "f32");
  Write(set, f, "bf16");
  Outcome r = Exec(dir, {f, "--reference", ref, "--json", "--positions", "0.5,1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(JsonChecker(r.out).Valid()) << r.out;
  for (const char* k : {"rel_mse", "mean_cosine", "attention", "mean_output_cosine", "min_output_cosine", "mean_score_cosine",
                        "queries", "reference_format", "layers", "positions"})
    EXPECT_TRUE(Has(r.out, k)) << k;
  EXPECT_NE(r.out.find("\"queries\":\"proxy:reference-key\""), std::string::npos);
  EXPECT_NE(r.out.find("\"positions\":[23,47]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"cases\":8,"), std::string::npos);  // 2 layers x 2 positions x 2 heads
  // Against itself: exact.
  Outcome self = Exec(dir, {ref, "--reference", ref, "--from", "mqkv", "--json"});
  ASSERT_EQ(self.code, 0) << self.err;
  EXPECT_NE(self.out.find("\"rel_mse\":0,\"mean_cosine\":1,\"min_cosine\":1"), std::string::npos) << self.out;
  EXPECT_NE(self.out.find("\"mean_output_cosine\":1,\"min_output_cosine\":1"), std::string::npos);
  // A reference of another shape is bad input.
  const std::string other = dir.Path("other.mqkv");
  Write(MakeSet(40), other, "f32");
  Outcome bad = Exec(dir, {f, "--reference", other});
  EXPECT_EQ(bad.code, 3) << bad.err;
  EXPECT_NE(bad.err.find("shape"), std::string::npos) << bad.err;
}

TEST_F(MqverifyTest, CorruptBlockExitsFour) {
  const std::string f = dir.Path("c.mqkv");
  Write(MakeSet(16), f, "f16");
  std::vector<uint8_t> bytes = mqkv::testing::ReadFile(f);
  bytes[64 + 128 + 5] ^= 0x40;  // a payload byte of the first block
  mqkv::testing::WriteFile(f, bytes);
  Outcome r = Exec(dir, {f, "--json"});
  EXPECT_EQ(r.code, 4) << r.err;
  EXPECT_TRUE(JsonChecker(r.out).Valid()) << r.out;
  EXPECT_NE(r.out.find("\"checksums_ok\":false"), std::string::npos);
  EXPECT_NE(r.err.find("checksum mismatch"), std::string::npos) << r.err;
  Outcome h = Exec(dir, {f, "--reference", f});
  EXPECT_EQ(h.code, 4);  // the reference read fails on the same block: still a verification failure
}

// --threads changes only the speed: the report (JSON, checksum errors in block order, backend
// counts, fidelity) and the exit code are the same for every thread count, corrupt blocks included.
TEST_F(MqverifyTest, ThreadCountsGiveTheSameReport) {
  const KvSet set = MakeSet(96);
  const std::string ref = dir.Path("ref.mqkv"), f = dir.Path("t.mqkv");
  Write(set, ref, "f32");
  {
    WriteOptions o;
    o.k_codec = CodecSpec::Parse("affine:bits=3,group=32").value();
    o.v_codec = CodecSpec::Parse("turbo3").value();
    o.writer.fsync = false;
    o.writer.max_block_tokens = 16;  // many blocks per tensor
    ASSERT_TRUE(WriteKvSet(set, f, FileFormat::kMqkv, o).ok());
  }
  std::string first;
  for (const char* threads : {"1", "2", "3", "0"}) {
    Outcome r = Exec(dir, {f, "--reference", ref, "--json", "--threads", threads});
    ASSERT_EQ(r.code, 0) << r.err;
    if (first.empty()) first = r.out;
    EXPECT_EQ(r.out, first) << threads << " threads";
  }
  std::vector<uint8_t> bytes = mqkv::testing::ReadFile(f);
  auto snap = Snapshot::Open(f);
  ASSERT_TRUE(snap.ok());
  for (size_t b : {size_t(1), size_t(5), size_t(9)}) bytes[(*snap)->blocks()[b].offset + 128 + 3] ^= 0x10;
  snap->reset();
  mqkv::testing::WriteFile(f, bytes);
  std::string bad, bad_err;
  for (const char* threads : {"1", "3"}) {
    Outcome r = Exec(dir, {f, "--json", "--threads", threads});
    EXPECT_EQ(r.code, 4) << r.err;
    if (bad.empty()) bad = r.out, bad_err = r.err;
    EXPECT_EQ(r.out, bad) << threads << " threads";
    EXPECT_EQ(r.err, bad_err);
  }
  EXPECT_NE(bad_err.find("block 1 "), std::string::npos) << bad_err;  // the first bad block is named
}

// The default compares each block's first and last 64 rows with the scalar reference and
// decodes every row; --compare all compares every row. Both say what they did.
TEST_F(MqverifyTest, CompareSampleOrAllRows) {
  const std::string f = dir.Path("s.mqkv");
  {
    WriteOptions o;
    o.k_codec = CodecSpec::Parse("affine:bits=3,group=32").value();
    o.v_codec = CodecSpec::Parse("f16").value();
    o.writer.fsync = false;
    o.writer.max_block_tokens = 200;  // blocks of 200 and 100 rows: one sampled, one compared whole
    ASSERT_TRUE(WriteKvSet(MakeSet(300), f, FileFormat::kMqkv, o).ok());
  }
  auto snap = Snapshot::Open(f);
  ASSERT_TRUE(snap.ok());
  uint64_t rows = 0;
  for (size_t b = 0; b < (*snap)->blocks().size(); ++b) rows += (*snap)->BlockHeaderAt(b).value()->n_tokens;
  const uint64_t blocks_of_200 = (*snap)->blocks().size() / 2, sampled = rows - blocks_of_200 * (200 - 128);
  snap->reset();
  Outcome s = Exec(dir, {f, "--json", "--backend", "simd"});
  ASSERT_EQ(s.code, 0) << s.err;
  EXPECT_NE(s.out.find("\"compare\":\"sample\""), std::string::npos) << s.out;
  Outcome a = Exec(dir, {f, "--json", "--backend", "simd", "--compare", "all"});
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_NE(a.out.find("\"compare\":\"all\""), std::string::npos) << a.out;
  // The reference decodes the sampled rows only, or every row.
  const auto counts = [](uint64_t c, uint64_t d) {
    return "\"reference\":true,\"blocks\":8,\"rows_compared\":" + std::to_string(c) + ",\"rows_decoded\":" + std::to_string(d);
  };
  ASSERT_EQ(rows, 1200u);
  EXPECT_NE(s.out.find(counts(sampled, sampled)), std::string::npos) << s.out;
  EXPECT_NE(a.out.find(counts(rows, rows)), std::string::npos) << a.out;
  if (!BackendAvailable(Backend::kSimd)) GTEST_SKIP() << "no SIMD ISA on this machine";
  // simd serves the affine K blocks (half the rows, credited); the raw f16 V blocks have no simd
  // f16 path and count for neither.
  Outcome t = Exec(dir, {f, "--backend", "simd"});
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find(std::to_string(sampled / 2) + " of " + std::to_string(rows) + " rows compared, " + std::to_string(rows / 2) + " of " +
                       std::to_string(rows) + " rows decoded"),
            std::string::npos)
      << t.out;
  Outcome u = Exec(dir, {f, "--backend", "simd", "--compare", "all"});
  ASSERT_EQ(u.code, 0) << u.err;
  EXPECT_NE(u.out.find(std::to_string(rows / 2) + " of " + std::to_string(rows) + " rows compared, " + std::to_string(rows / 2) + " of " +
                       std::to_string(rows) + " rows decoded"),
            std::string::npos)
      << u.out;
}

// Block headers are checked on first access, not at open (spec/FORMAT.md section 8, steps
// 17-19); a bad one is still malformed input: exit 3 with one line naming file, byte and block.
TEST_F(MqverifyTest, CorruptBlockHeaderExitsThree) {
  const std::string f = dir.Path("h.mqkv");
  Write(MakeSet(16), f, "f16");
  std::vector<uint8_t> bytes = mqkv::testing::ReadFile(f);
  bytes[64 + 8] ^= 0x04;  // the layer field of the first block's header
  mqkv::testing::WriteFile(f, bytes);
  const std::string mqinfo = std::string(MQKV_BINARY_DIR) + "/tools/mqinfo";
  for (const std::vector<std::string>& cmd : std::vector<std::vector<std::string>>{
           {kTool, f}, {kTool, f, "--json"}, {mqinfo, f}, {mqinfo, f, "--no-verify"}}) {
    std::vector<std::string> args(cmd.begin() + 1, cmd.end());
    Outcome r = Exec(dir, args, cmd[0]);
    EXPECT_EQ(r.code, 3) << cmd[0] << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(f + ": at byte 71: block 0: block header (layer/kind) does not match its tensor"), std::string::npos) << r.err;
  }
}

// mqinfo shows the levels a fit=lloyd codebook block stores (the codec string keeps the start).
TEST_F(MqverifyTest, MqinfoShowsFittedLevels) {
  const std::string f = dir.Path("fit.mqkv");
  Write(MakeSet(64), f, "codebook:bits=2,levels=-1/-0.3/0.3/1,scale=absmax,fit=lloyd");
  const std::string mqinfo = std::string(MQKV_BINARY_DIR) + "/tools/mqinfo";
  Outcome r = Exec(dir, {f}, mqinfo);
  ASSERT_EQ(r.code, 0) << r.err;
  auto snap = Snapshot::Open(f);
  ASSERT_TRUE(snap.ok());
  auto spec = (*snap)->TensorSpec(0);
  ASSERT_TRUE(spec.ok());
  ASSERT_EQ(spec->levels.size(), 4u);
  EXPECT_NE(spec->levels, (std::vector<float>{-1.0f, -0.3f, 0.3f, 1.0f}));
  char first[32];
  std::snprintf(first, sizeof first, "fitted levels %.6g/", double(spec->levels[0]));
  EXPECT_NE(r.out.find(first), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("levels=-1/-0.3/0.3/1,scale=absmax,fit=lloyd"), std::string::npos) << r.out;
}

TEST_F(MqverifyTest, ExitCodes) {
  const std::string f = dir.Path("d.mqkv");
  Write(MakeSet(8), f, "f32");
  EXPECT_EQ(Exec(dir, {}).code, 2);
  EXPECT_EQ(Exec(dir, {f, "--no-such-flag"}).code, 2);
  EXPECT_EQ(Exec(dir, {f, "--positions", "0,1"}).code, 2);
  EXPECT_EQ(Exec(dir, {f, "--positions", "abc"}).code, 2);
  EXPECT_EQ(Exec(dir, {f, "--backend", "fast"}).code, 2);
  EXPECT_EQ(Exec(dir, {f, "--backend", "scalar"}).code, 0);
  EXPECT_EQ(Exec(dir, {f, "--compare", "some"}).code, 2);
  EXPECT_EQ(Exec(dir, {f, "--compare", "all"}).code, 0);
  EXPECT_EQ(Exec(dir, {f, "--from", "npy"}).code, 2);
  EXPECT_EQ(Exec(dir, {dir.Path("missing.mqkv")}).code, 5);
  const std::string junk = dir.Path("junk.mqkv");
  mqkv::testing::WriteFile(junk, std::vector<uint8_t>(300, 'x'));
  Outcome j = Exec(dir, {junk});
  EXPECT_EQ(j.code, 3);
  EXPECT_NE(j.err.find("junk.mqkv"), std::string::npos) << j.err;
  EXPECT_EQ(Exec(dir, {f, "--reference", dir.Path("missing.mqkv"), "--from", "mqkv"}).code, 5);
  EXPECT_EQ(Exec(dir, {f, "--reference", junk, "--from", "mqkv"}).code, 3);
}
