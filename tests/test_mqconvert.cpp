// mqconvert end to end through the built binary: lossless defaults, codecs, token ranges,
// exit codes and one-line errors.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <cmath>
#include <sstream>

#include "mqkv/mqkv.h"
#include "support.h"

using namespace mqkv;
using mqkv::testing::ReadFile;
using mqkv::testing::TempDir;
using mqkv::testing::WriteFile;

namespace {

const std::string kBin = MQKV_BINARY_DIR "/tools/mqconvert";

struct RunResult {
  int code = -1;
  std::string out, err;
};

RunResult Exec(const TempDir& dir, const std::string& args) {
  const std::string o = dir.Path("stdout.txt"), e = dir.Path("stderr.txt");
  const std::string cmd = kBin + " " + args + " > " + o + " 2> " + e;
  const int st = std::system(cmd.c_str());
  RunResult r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  auto slurp = [](const std::string& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  r.out = slurp(o);
  r.err = slurp(e);
  return r;
}

KvSet MakeSet(const std::string& dtype, uint32_t tokens) {
  KvSet s;
  s.model.architecture = "qwen2";
  s.model.n_layer = 3;
  s.model.n_head = 4;
  s.model.n_head_kv = 2;
  s.model.head_dim_k = s.model.head_dim_v = 16;
  s.model.source_engine = "test";
  for (uint32_t i = 0; i < tokens; ++i) s.model.tokens.push_back(int32_t(i * 7));
  s.model.metadata = {{"note", "e2e"}};
  uint32_t seed = 10;
  for (uint32_t l = 0; l < 3; ++l)
    for (Kind k : {Kind::kK, Kind::kV}) {
      KvTensor t;
      t.desc.layer = l;
      t.desc.kind = k;
      t.desc.n_heads = 2;
      t.desc.head_dim = 16;
      t.desc.n_tokens = tokens;
      t.desc.source_dtype = dtype;
      t.data = mqkv::testing::RandomRows(uint64_t(tokens) * 32, seed++);
      for (float& x : t.data) x = dtype == "f16" ? round_to_f16(x) : dtype == "bf16" ? bf16_to_f32(f32_to_bf16(x)) : x;
      s.tensors.push_back(std::move(t));
    }
  return s;
}

void ExpectBitsEqual(const KvSet& a, const KvSet& b) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    ASSERT_EQ(a.tensors[i].data.size(), b.tensors[i].data.size());
    EXPECT_EQ(std::memcmp(a.tensors[i].data.data(), b.tensors[i].data.data(), a.tensors[i].data.size() * 4), 0) << "tensor " << i;
  }
}

class MqconvertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kBin)) GTEST_FAIL() << kBin << " is missing: build the mqconvert target";
  }
  TempDir dir;
};

}  // namespace

TEST_F(MqconvertTest, LosslessChainThroughEveryFormat) {
  for (const std::string dtype : {"f32", "f16", "bf16"}) {
    SCOPED_TRACE(dtype);
    const KvSet set = MakeSet(dtype, 9);
    const std::string st = dir.Path(dtype + ".safetensors");
    ASSERT_TRUE(WriteKvSet(set, st, FileFormat::kSafetensors).ok());
    // safetensors -> mqkv (default codec: the source's raw type) -> npz -> npy -> mqkv -> safetensors
    const std::string a = dir.Path(dtype + ".mqkv"), b = dir.Path(dtype + ".npz"), c = dir.Path(dtype + ".npy"), d = dir.Path(dtype + "_2.mqkv"),
                      e = dir.Path(dtype + "_2.safetensors");
    for (auto [from, to] : {std::pair{st, a}, {a, b}, {b, c}, {c, d}, {d, e}}) {
      RunResult r = Exec(dir, from + " " + to);
      ASSERT_EQ(r.code, 0) << from << " -> " << to << ": " << r.err;
      EXPECT_TRUE(r.err.empty()) << "stderr is not a terminal: no progress line expected, got " << r.err;
      EXPECT_NE(r.out.find("6 tensors, 3 layers, 9 tokens"), std::string::npos) << r.out;
    }
    auto snap = Snapshot::Open(a);
    ASSERT_TRUE(snap.ok());
    for (const TensorInfo& t : (*snap)->tensors()) EXPECT_EQ(t.codec, dtype) << "default codec must be the source's raw type";
    auto got = ReadKvSet(e, FileFormat::kSafetensors);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ExpectBitsEqual(set, *got);
  }
}

TEST_F(MqconvertTest, CodecsZstdAndTokenRange) {
  const KvSet set = MakeSet("f16", 40);
  const std::string src = dir.Path("src.safetensors"), q = dir.Path("q.mqkv");
  ASSERT_TRUE(WriteKvSet(set, src, FileFormat::kSafetensors).ok());
  RunResult r = Exec(dir, src + " " + q + " --k-codec f32 --v-codec bf16 --zstd 3 --max-block-tokens 8");
  ASSERT_EQ(r.code, 0) << r.err;
  auto snap = Snapshot::Open(q);
  ASSERT_TRUE(snap.ok());
  for (const TensorInfo& t : (*snap)->tensors()) {
    EXPECT_EQ(t.codec, t.kind == Kind::kK ? "f32" : "bf16");
    EXPECT_EQ(t.n_blocks, 5u);
  }
  // --tokens on an mqkv input: rows 8..24 only, bit-identical to slicing the source.
  const std::string part = dir.Path("part.safetensors");
  r = Exec(dir, q + " " + part + " --tokens 8:24");
  ASSERT_EQ(r.code, 0) << r.err;
  auto got = ReadKvSet(part, FileFormat::kSafetensors);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  auto want = ReadKvSet(q, FileFormat::kMqkv);
  ASSERT_TRUE(want.ok());
  ASSERT_TRUE(SliceTokens(&*want, 8, 24).ok());
  ExpectBitsEqual(*want, *got);
  EXPECT_EQ(got->model.tokens, std::vector<int32_t>(set.model.tokens.begin() + 8, set.model.tokens.begin() + 24));
  // --to overrides the extension.
  r = Exec(dir, src + " " + dir.Path("odd.bin") + " --to npz");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(ReadKvSet(dir.Path("odd.bin"), FileFormat::kNpz).ok());
  auto det = DetectFileFormat(dir.Path("odd.bin"));
  ASSERT_TRUE(det.ok());
  EXPECT_EQ(*det, FileFormat::kNpz);
}

TEST_F(MqconvertTest, ExitCodesAndOneLineErrors) {
  const std::string src = dir.Path("src.safetensors");
  ASSERT_TRUE(WriteKvSet(MakeSet("f32", 4), src, FileFormat::kSafetensors).ok());
  auto one_line = [](const RunResult& r) { return !r.err.empty() && r.err.find('\n') == r.err.size() - 1; };

  RunResult r = Exec(dir, "--help");
  EXPECT_EQ(r.code, 0);
  for (const char* s : {"Exit codes", "0  ok", "2  usage", "3  bad input", "4  verification", "5  I/O", "6  internal"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s;

  r = Exec(dir, src);  // missing OUT
  EXPECT_EQ(r.code, 2) << r.err;
  r = Exec(dir, src + " " + dir.Path("x.mqkv") + " --codec nonsense:bits=9");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_TRUE(one_line(r)) << r.err;
  r = Exec(dir, src + " " + dir.Path("x.npz") + " --codec f16");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("mqkv output"), std::string::npos) << r.err;
  r = Exec(dir, src + " " + dir.Path("x.unknown"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--to"), std::string::npos) << r.err;
  r = Exec(dir, src + " " + dir.Path("x.mqkv") + " --tokens 3");
  EXPECT_EQ(r.code, 2) << r.err;
  r = Exec(dir, src + " " + dir.Path("x.mqkv") + " --from nope");
  EXPECT_EQ(r.code, 2) << r.err;

  r = Exec(dir, src + " " + dir.Path("x.mqkv") + " --tokens 2:9");
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("exceeds the 4 tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(src), std::string::npos) << "error names the input: " << r.err;

  const std::string bad = dir.Path("bad.safetensors");
  WriteFile(bad, {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, '{', '}'});
  r = Exec(dir, bad + " " + dir.Path("x.mqkv"));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_TRUE(one_line(r)) << r.err;
  EXPECT_NE(r.err.find(bad), std::string::npos) << r.err;

  r = Exec(dir, dir.Path("missing.safetensors") + " " + dir.Path("x.mqkv"));
  EXPECT_EQ(r.code, 5) << r.err;
  r = Exec(dir, src + " " + dir.Path("no/such/dir/x.mqkv"));
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_NE(r.err.find("no/such/dir/x.mqkv"), std::string::npos) << r.err;

  // A corrupt mqkv block: exit 4.
  const std::string m = dir.Path("m.mqkv");
  ASSERT_EQ(Exec(dir, src + " " + m).code, 0);
  std::vector<uint8_t> b = ReadFile(m);
  {
    auto s = Snapshot::Open(m);
    ASSERT_TRUE(s.ok());
    b[(*s)->blocks()[0].offset + kBlockHeaderBytes] ^= 1;
  }
  WriteFile(m, b);
  r = Exec(dir, m + " " + dir.Path("y.npz"));
  EXPECT_EQ(r.code, 4) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.Path("y.npz")));
}

// A llama.cpp state does not say how a row splits into heads; --head-dim-k/-v tell it.
TEST_F(MqconvertTest, HeadDimForLlamaInput) {
  const KvSet set = MakeSet("f16", 6);  // 2 heads x 16 dims per row
  const std::string src = dir.Path("src.safetensors"), seq = dir.Path("slot.bin"), a = dir.Path("a.mqkv"), b = dir.Path("b.mqkv");
  ASSERT_TRUE(WriteKvSet(set, src, FileFormat::kSafetensors).ok());
  ASSERT_EQ(Exec(dir, src + " " + seq + " --to llama-seq").code, 0);
  RunResult r = Exec(dir, seq + " " + a + " --head-dim-k 16");
  ASSERT_EQ(r.code, 0) << r.err;
  auto snap = Snapshot::Open(a);
  ASSERT_TRUE(snap.ok());
  for (const TensorInfo& t : (*snap)->tensors()) {
    EXPECT_EQ(t.n_heads, 2u);
    EXPECT_EQ(t.head_dim, 16u);
  }
  r = Exec(dir, src + " " + b + " --head-dim-k 16");
  EXPECT_EQ(r.code, 2) << "--head-dim-k applies to llama.cpp input only";
  EXPECT_NE(r.err.find("--head-dim-k"), std::string::npos) << r.err;
}

// A llama.cpp state does not record the model's RoPE either; keys before RoPE (prerope=1) need it,
// and --rope-type / --rope-base give it (kept in the output's model info).
TEST_F(MqconvertTest, RopeFactsForKeysBeforeRope) {
  const KvSet set = MakeSet("f16", 6);
  const std::string src = dir.Path("src.safetensors"), seq = dir.Path("slot.bin"), a = dir.Path("a.mqkv");
  ASSERT_TRUE(WriteKvSet(set, src, FileFormat::kSafetensors).ok());
  ASSERT_EQ(Exec(dir, src + " " + seq + " --to llama-seq").code, 0);
  const std::string codec = " --head-dim-k 16 --k-codec affine:levels=6,group=16,axis=channel,entropy=rans,prerope=1 --v-codec affine:bits=4";
  RunResult r = Exec(dir, seq + " " + a + codec);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("prerope=1 needs the model's RoPE type"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(a));
  r = Exec(dir, seq + " " + a + codec + " --rope-type neox --rope-base 100000");
  ASSERT_EQ(r.code, 0) << r.err;
  auto snap = Snapshot::Open(a);
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_EQ((*snap)->model().rope_type, "neox");
  EXPECT_EQ((*snap)->model().rope_base, 100000.0f);
  EXPECT_EQ((*snap)->version_minor(), 4);
  for (const TensorInfo& t : (*snap)->tensors()) {
    EXPECT_EQ(t.rope.empty(), t.kind != Kind::kK);
    if (t.kind == Kind::kK) EXPECT_EQ(t.rope.style, RopeUndo::kNeox);
  }
  // Back to a llama.cpp state: the keys come back rotated forward, close to the source's.
  const std::string back = dir.Path("back.safetensors");
  ASSERT_EQ(Exec(dir, a + " " + back).code, 0);
  auto got = ReadKvSet(back, FileFormat::kSafetensors);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  for (size_t i = 0; i < set.tensors.size(); ++i) {
    const KvTensor* t = got->Find(set.tensors[i].desc.layer, set.tensors[i].desc.kind);
    ASSERT_NE(t, nullptr);
    double e = 0, n = 0;
    for (size_t j = 0; j < t->data.size(); ++j) e += std::pow(t->data[j] - set.tensors[i].data[j], 2), n += std::pow(set.tensors[i].data[j], 2);
    EXPECT_LT(e / n, 0.05) << "tensor " << i;
  }
  // An input that records other RoPE facts is not overridden.
  r = Exec(dir, a + " " + dir.Path("c.mqkv") + " --rope-type norm");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--rope-type norm disagrees with the input's recorded RoPE type neox"), std::string::npos) << r.err;
  r = Exec(dir, a + " " + dir.Path("c.mqkv") + " --rope-base 10000");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("disagrees with the input's recorded RoPE base"), std::string::npos) << r.err;
  r = Exec(dir, a + " " + dir.Path("c.mqkv") + " --rope-type mrope");
  EXPECT_EQ(r.code, 2) << r.err;
}

namespace {

// --threads changes who encodes and decodes, never the bytes (issue 20).
TEST_F(MqconvertTest, ThreadCountsGiveIdenticalBytes) {
  const KvSet set = MakeSet("f16", 96);
  const std::string src = dir.Path("src.safetensors");
  ASSERT_TRUE(WriteKvSet(set, src, FileFormat::kSafetensors).ok());
  std::vector<uint8_t> first;
  for (const char* t : {"1", "2", "3", "8", "0"}) {
    const std::string out = dir.Path(std::string("t") + t + ".mqkv");
    RunResult r = Exec(dir, src + " " + out + " --codec affine:bits=3,group=16,sinks=4 --max-block-tokens 32 --threads " + t);
    ASSERT_EQ(r.code, 0) << r.err;
    const auto bytes = mqkv::testing::ReadFile(out);
    if (first.empty()) first = bytes;
    EXPECT_EQ(bytes, first) << "--threads " << t;
    // and back: the decoded interchange file is the same for every thread count too
    const std::string back = dir.Path(std::string("b") + t + ".safetensors");
    r = Exec(dir, out + " " + back + " --threads " + t);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(mqkv::testing::ReadFile(back), mqkv::testing::ReadFile(dir.Path("b1.safetensors"))) << "--threads " << t;
  }
  // A lossy f16 snapshot comes back as f16 by default (the source dtype), f32 on --dtype f32.
  auto back = ReadFile(dir.Path("b1.safetensors"));
  EXPECT_NE(std::string(back.begin(), back.end()).find("\"dtype\":\"F16\""), std::string::npos);
  RunResult r = Exec(dir, dir.Path("t1.mqkv") + " " + dir.Path("f32.safetensors") + " --dtype f32");
  ASSERT_EQ(r.code, 0) << r.err;
  auto f32 = ReadFile(dir.Path("f32.safetensors"));
  EXPECT_NE(std::string(f32.begin(), f32.end()).find("\"dtype\":\"F32\""), std::string::npos);
  EXPECT_GT(f32.size(), back.size() * 3 / 2);
  r = Exec(dir, src + " " + dir.Path("x.mqkv") + " --dtype f16");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--dtype applies to safetensors, npy and npz output, not mqkv"), std::string::npos) << r.err;
}

// Rate control (--target-bits): the file measures at or below the target (K/V bytes incl. the
// index, as mqverify counts) and uses most of it; the level count differs where the layers
// differ; the choice is in each tensor's codec and in metadata; more bits never cost fidelity;
// the bytes do not depend on the thread count; misuse is exit 2 with nothing written.
TEST_F(MqconvertTest, RateControlMeetsTheTargetAndRecordsTheChoice) {
  KvSet set = MakeSet("f16", 1024);
  // Make the layers unequal: layer 1 heavy-tailed (a few large values per row), layer 2 small.
  for (KvTensor& t : set.tensors) {
    for (size_t i = 0; i < t.data.size(); ++i) {
      float& x = t.data[i];
      if (t.desc.layer == 1 && i % 37 == 0) x *= 12.0f;
      if (t.desc.layer == 2) x *= 0.05f;
      x = round_to_f16(x);
    }
  }
  const std::string src = dir.Path("src.safetensors");
  ASSERT_TRUE(WriteKvSet(set, src, FileFormat::kSafetensors).ok());
  const std::string codecs = " --codec affine:group=64,meta=4,axis=channel,entropy=rans --v-codec affine:group=16,meta=4,rotate=hadamard,entropy=rans";
  double last_err = INFINITY;
  for (double target : {2.4, 2.9, 3.6}) {
    SCOPED_TRACE(target);
    const std::string out = dir.Path("rate" + std::to_string(int(target * 10)) + ".mqkv");
    RunResult r = Exec(dir, src + " " + out + codecs + " --target-bits " + std::to_string(target));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("rate-controlled affine:"), std::string::npos) << r.out;
    auto snap = Snapshot::Open(out);
    ASSERT_TRUE(snap.ok()) << snap.status().ToString();
    auto acc = AccountSnapshot(**snap);
    ASSERT_TRUE(acc.ok());
    const double bits = acc->total.actual_bits_per_dim();
    EXPECT_LE(bits, target);
    EXPECT_GT(bits, target - 0.35) << "the budget is mostly spent";
    std::set<std::string> chosen;
    for (const TensorInfo& t : (*snap)->tensors()) {
      EXPECT_NE(t.codec.find("entropy=rans"), std::string::npos) << t.codec;
      chosen.insert(t.codec.substr(t.codec.find("levels=")));
    }
    EXPECT_GE(chosen.size(), 3u) << "unequal layers get unequal level counts";
    const auto& meta = (*snap)->model().metadata;
    auto it = std::find_if(meta.begin(), meta.end(), [](const auto& kv) { return kv.first == "mqkv.rate_control"; });
    ASSERT_NE(it, meta.end());
    EXPECT_EQ(it->second.rfind("target_bits=" + std::to_string(target).substr(0, 3) + ";distortion=attention;queries=proxy-key;", 0), 0u) << it->second;
    // Pooled squared error against the source falls as the target rises.
    auto got = ReadKvSet(out, FileFormat::kMqkv);
    ASSERT_TRUE(got.ok());
    double err = 0;
    for (size_t i = 0; i < set.tensors.size(); ++i)
      for (size_t j = 0; j < set.tensors[i].data.size(); ++j) err += std::pow(double(got->tensors[i].data[j]) - set.tensors[i].data[j], 2);
    EXPECT_LT(err, last_err);
    last_err = err;
  }
  // Same bytes for every thread count, and with the nmse measure the record says so.
  const std::string a = dir.Path("a.mqkv"), b = dir.Path("b.mqkv");
  ASSERT_EQ(Exec(dir, src + " " + a + codecs + " --target-bits 2.6 --rate-distortion nmse --threads 1").code, 0);
  ASSERT_EQ(Exec(dir, src + " " + b + codecs + " --target-bits 2.6 --rate-distortion nmse --threads 3").code, 0);
  EXPECT_EQ(ReadFile(a), ReadFile(b));
  auto sa = Snapshot::Open(a);
  ASSERT_TRUE(sa.ok());
  bool recorded = false;
  for (const auto& [k, v] : (*sa)->model().metadata) recorded |= k == "mqkv.rate_control" && v.find(";distortion=nmse;") != std::string::npos;
  EXPECT_TRUE(recorded);

  // Misuse: exit 2, one line naming the problem, no output file.
  const std::string none = dir.Path("none.mqkv");
  struct Bad {
    std::string args, message;
  };
  for (const Bad& bad : std::vector<Bad>{
           {" --codec affine:bits=3,group=64 --target-bits 2.5", "--target-bits chooses the level count of entropy-coded affine codes"},
           {" --target-bits 2.5", "--target-bits chooses the level count"},
           {codecs + " --target-bits 0.4", "is below what the cheapest candidate level count reaches"},
           {codecs + " --rate-levels 4,5", "--rate-levels, --rate-distortion and --rate-queries need --target-bits"},
           {codecs + " --target-bits 2.5 --rate-levels 2,5", "--rate-levels"},
           {codecs + " --target-bits -1", "--target-bits"},
       }) {
    SCOPED_TRACE(bad.args);
    RunResult r = Exec(dir, src + " " + none + bad.args);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_NE(r.err.find(bad.message), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(none));
  }
  RunResult r = Exec(dir, src + " " + dir.Path("x.safetensors") + " --target-bits 2.5");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("apply to mqkv output"), std::string::npos) << r.err;
}

}  // namespace

namespace {

// Peak resident set (KiB) of one mqconvert run (its exit status in *code).
long PeakRssKiB(const std::vector<std::string>& args, int* code) {
  std::vector<std::string> argv_s = {kBin};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int st = 0;
  struct rusage ru {};
  ::wait4(pid, &st, 0, &ru);
  *code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return ru.ru_maxrss;
}

}  // namespace

// Conversion streams tensor by tensor (README "Memory"): mqkv and safetensors in either
// direction hold a few tensors, not the snapshot. A 64 MiB f16 snapshot (32 tensors of 4 MiB as
// fp32) converts within 64 MiB of peak RSS on 2 threads, where loading it whole as fp32 alone
// takes 128 MiB; the lossless round trip is byte-identical.
TEST(MqconvertMemory, ConversionStreamsTensorByTensor) {
#if defined(__SANITIZE_ADDRESS__)
  // ASan's shadow memory and quarantine make RSS meaningless (no limit below), and its Debug
  // tools convert ~30x slower: a 4 MiB snapshot keeps the byte checks at a fraction of the time.
  const uint32_t n_layer = 4, n_tok = 512;
#else
  const uint32_t n_layer = 16, n_tok = 2048;
#endif
  TempDir dir;
  KvSet set;
  set.model.architecture = "llama";
  set.model.n_layer = n_layer;
  set.model.n_head_kv = 8;
  set.model.head_dim_k = set.model.head_dim_v = 64;
  for (int32_t i = 0; i < int32_t(n_tok); ++i) set.model.tokens.push_back(i % 1000);
  uint32_t seed = 3;
  for (uint32_t l = 0; l < n_layer; ++l)
    for (Kind k : {Kind::kK, Kind::kV}) {
      KvTensor t;
      t.desc.layer = l;
      t.desc.kind = k;
      t.desc.n_tokens = n_tok;
      t.desc.n_heads = 8;
      t.desc.head_dim = 64;
      t.desc.source_dtype = "f16";
      t.data = mqkv::testing::RandomRows(uint64_t(n_tok) * 8 * 64, seed++);
      for (float& x : t.data) x = round_to_f16(x);
      set.tensors.push_back(std::move(t));
    }
  const std::string src = dir.Path("big.safetensors");
  ASSERT_TRUE(WriteKvSet(set, src, FileFormat::kSafetensors).ok());
  set = KvSet();
#if defined(__SANITIZE_ADDRESS__)
  const long limit = 0;  // ASan's shadow memory and quarantine make RSS meaningless: bytes only
#else
  const long limit = 64 * 1024;  // KiB
#endif
  int code = -1;
  const std::string q = dir.Path("q.mqkv"), l = dir.Path("l.mqkv"), back = dir.Path("back.safetensors"), lb = dir.Path("lb.safetensors");
  struct Run {
    std::vector<std::string> args;
  };
  for (const Run& r : {Run{{src, q, "--codec", "affine_seven_level_3bit_g64_meta4", "--threads", "2"}},
                       Run{{q, back, "--threads", "2"}}, Run{{src, l, "--threads", "2"}}, Run{{l, lb, "--threads", "2"}},
                       Run{{src, dir.Path("part.mqkv"), "--tokens", "100:" + std::to_string(n_tok - 148), "--threads", "2"}},
                       Run{{q, dir.Path("slot.bin"), "--to", "llama-seq", "--threads", "2"}},
                       Run{{dir.Path("slot.bin"), dir.Path("slot.mqkv"), "--from", "llama-seq", "--threads", "2"}},
                       Run{{l, dir.Path("big.npz"), "--threads", "2"}}, Run{{dir.Path("big.npz"), dir.Path("z.mqkv"), "--threads", "2"}},
                       Run{{dir.Path("z.mqkv"), dir.Path("zb.safetensors"), "--threads", "2"}},
                       Run{{q, dir.Path("big.npy"), "--threads", "2"}}, Run{{dir.Path("big.npy"), dir.Path("y.mqkv"), "--threads", "2"}}}) {
    const long kib = PeakRssKiB(r.args, &code);
    EXPECT_EQ(code, 0) << r.args[0] << " -> " << r.args[1];
    if (limit) {
      EXPECT_LT(kib, limit) << r.args[0] << " -> " << r.args[1] << ": peak RSS " << kib << " KiB";
    }
  }
  EXPECT_EQ(ReadFile(lb), ReadFile(src));
  EXPECT_EQ(ReadFile(dir.Path("zb.safetensors")), ReadFile(src));  // through npz (streamed both ways), every byte kept
  {  // through npy (one array, no metadata): the 3-bit rows as f16, exactly
    auto y = Snapshot::Open(dir.Path("y.mqkv"));
    auto three = Snapshot::Open(q);
    ASSERT_TRUE(y.ok() && three.ok());
    EXPECT_EQ((*y)->tensors()[5].codec, "f16");
    std::vector<uint16_t> a(n_tok * 8 * 64), b(a.size());
    ASSERT_TRUE((*y)->Decode(5, 0, n_tok, DType::kF16, a.data()).ok());
    ASSERT_TRUE((*three)->Decode(5, 0, n_tok, DType::kF16, b.data()).ok());
    EXPECT_EQ(a, b);
  }
  // The state of the 3-bit snapshot, read back streaming, holds its f16 rows exactly.
  auto fromslot = Snapshot::Open(dir.Path("slot.mqkv"));
  auto three = Snapshot::Open(q);
  ASSERT_TRUE(fromslot.ok() && three.ok());
  ASSERT_EQ((*fromslot)->tensors().size(), (*three)->tensors().size());
  EXPECT_EQ((*fromslot)->tensors()[5].codec, "f16");
  std::vector<uint16_t> a(n_tok * 8 * 64), b(a.size());
  ASSERT_TRUE((*fromslot)->Decode(5, 0, n_tok, DType::kF16, a.data()).ok());
  ASSERT_TRUE((*three)->Decode(5, 0, n_tok, DType::kF16, b.data()).ok());
  EXPECT_EQ(a, b);
  auto part = Snapshot::Open(dir.Path("part.mqkv"));
  ASSERT_TRUE(part.ok());
  EXPECT_EQ((*part)->tensors()[0].n_tokens, n_tok - 248);
  EXPECT_EQ((*part)->model().tokens.size(), size_t(n_tok - 248));
  EXPECT_EQ((*part)->tensors()[0].codec, "f16");
}

// Streaming writes the output while the input is still being read: a corrupt block in the last
// tensor is found after earlier tensors were written, and still nothing is lost: exit 4 naming
// the file and block, the old output kept, no temporary file left (safetensors and mqkv outputs).
TEST(MqconvertMemory, ACorruptTensorMidStreamLosesNothing) {
  TempDir dir;
  const std::string in = dir.Path("in.mqkv");
  {
    WriteOptions o;
    o.k_codec = o.v_codec = CodecSpec::Parse("f16").value();
    o.writer.fsync = false;
    ASSERT_TRUE(WriteKvSet(MakeSet("f16", 32), in, FileFormat::kMqkv, o).ok());
  }
  std::vector<uint8_t> bytes = ReadFile(in);
  {
    auto s = Snapshot::Open(in);
    ASSERT_TRUE(s.ok());
    const BlockInfo& last = (*s)->blocks().back();
    bytes[last.offset + 128 + 5] ^= 0x21;
  }
  WriteFile(in, bytes);
  for (const char* out_name : {"out.safetensors", "out.mqkv", "out.npz", "out.npy"}) {
    const std::string out = dir.Path(out_name);
    WriteFile(out, std::vector<uint8_t>{'o', 'l', 'd'});
    RunResult r = Exec(dir, in + " " + out + " --threads 2");
    EXPECT_EQ(r.code, 4) << r.err;
    EXPECT_NE(r.err.find(in + ": at byte"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("checksum mismatch"), std::string::npos) << r.err;
    EXPECT_EQ(ReadFile(out), (std::vector<uint8_t>{'o', 'l', 'd'}));
  }
  for (const auto& e : std::filesystem::directory_iterator(dir.dir()))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

// The library never prints: an MQKV_SIMD this machine cannot follow is a warning the tool prints
// (one line naming the variable and what is used instead); the command still succeeds.
TEST(MqconvertMemory, UnavailableSimdChoiceIsTheToolsWarning) {
  TempDir dir;
  const std::string in = dir.Path("in.mqkv"), e = dir.Path("err.txt");
  ASSERT_TRUE(WriteKvSet(MakeSet("f16", 4), in, FileFormat::kMqkv).ok());
  const std::string cmd = "MQKV_SIMD=avx1024 " + kBin + " " + in + " " + dir.Path("o.safetensors") + " > /dev/null 2> " + e;
  const int st = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  const std::vector<uint8_t> err = ReadFile(e);
  const std::string text(err.begin(), err.end());
  EXPECT_EQ(text.rfind("mqconvert: warning: MQKV_SIMD=avx1024 is not available on this machine (available: ", 0), 0u) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;  // the library itself wrote nothing
}
