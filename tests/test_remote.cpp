// Remote snapshots (spec/REMOTE.md) against a loopback HTTP server that injects faults: request
// counts of open and of a layer read, bit-identical decode, retries, and a clear error (naming the
// URL, never a credential) for every fault the client cannot recover from.
#include <gtest/gtest.h>

#include <cstdlib>

#include "http_server.h"
#include "io/remote.h"
#include "mqkv/mqkv.h"
#include "support.h"

namespace mqkv {
namespace {

using testing::HttpObjectServer;
using testing::TempDir;

constexpr uint32_t kLayers = 30, kTokens = 256, kHeads = 2, kDim = 64;

// A 30-layer f16 snapshot (about 3.9 MB: each layer's K and V about 1/30 of it), blocks of
// `block_tokens` rows (0: one per tensor).
std::vector<uint8_t> MakeSnapshot(uint32_t block_tokens = 0, const char* codec = "f16") {
  TempDir dir;
  const std::string path = dir.Path("s.mqkv");
  WriterOptions wo;
  wo.max_block_tokens = block_tokens;
  wo.fsync = false;
  auto w = Writer::Create(path, wo);
  EXPECT_TRUE(w.ok());
  ModelInfo m;
  m.architecture = "llama";
  m.n_layer = kLayers;
  m.n_head = m.n_head_kv = kHeads;
  m.head_dim_k = m.head_dim_v = kDim;
  m.tokens.assign(kTokens, 7);
  (*w)->SetModel(m);
  for (uint32_t l = 0; l < kLayers; ++l)
    for (Kind k : {Kind::kK, Kind::kV}) {
      std::vector<float> rows = testing::RandomRows(uint64_t(kTokens) * kHeads * kDim, 100 + 2 * l + uint32_t(k));
      TensorDesc d;
      d.layer = l;
      d.kind = k;
      d.n_heads = kHeads;
      d.head_dim = kDim;
      d.n_tokens = kTokens;
      EXPECT_TRUE((*w)->AddTensor(d, rows.data(), *CodecSpec::Parse(codec)).ok());
    }
  EXPECT_TRUE((*w)->Finish().ok());
  return testing::ReadFile(path);
}

OpenOptions Fast() {
  OpenOptions o;
  o.remote.backoff_ms = 1;
  o.remote.connect_timeout_ms = 2000;
  o.remote.low_speed_timeout_s = 2;
  return o;
}

std::vector<uint16_t> DecodeAll(const Snapshot& s, size_t t) {
  const TensorInfo& ti = s.tensors()[t];
  std::vector<uint16_t> out(uint64_t(ti.n_tokens) * ti.n_heads * ti.head_dim);
  Status st = s.Decode(t, 0, ti.n_tokens, DType::kF16, out.data());
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

TEST(Remote, OpenIsOneRequestAndDecodesBitIdenticalToLocal) {
  const auto bytes = MakeSnapshot();
  HttpObjectServer server(bytes);
  auto remote = Snapshot::Open(server.Url(), Fast());
  ASSERT_TRUE(remote.ok()) << remote.status().ToString();
  EXPECT_EQ(server.gets(), 1u);  // the suffix range holds the tail and the whole footer
  EXPECT_EQ(server.requests()[0].range, "bytes=-65536");
  EXPECT_EQ((*remote)->io_stats().requests, 1u);
  auto local = Snapshot::OpenBytes(bytes.data(), bytes.size(), "local");
  ASSERT_TRUE(local.ok());
  EXPECT_EQ((*remote)->model(), (*local)->model());
  for (size_t t = 0; t < (*local)->tensors().size(); ++t) EXPECT_EQ(DecodeAll(**remote, t), DecodeAll(**local, t)) << t;
  // Decoding every tensor in order runs on background read-ahead after the first few, and fetches
  // each byte about once (the read-ahead ranges line up with the tensors).
  EXPECT_LT((*remote)->io_stats().bytes_fetched, 65536 + bytes.size() + bytes.size() / 50) << (*remote)->io_stats().bytes_fetched;
  // Every request after the first is pinned to the ETag seen at open.
  for (size_t i = 1; i < server.requests().size(); ++i) EXPECT_FALSE(server.requests()[i].if_match.empty());
  EXPECT_EQ((*remote)->source().identity(), "\"v1-" + std::to_string(bytes.size()) + "\"");
}

TEST(Remote, OneLayerFetchesOnlyItsBlocksInOneRequestPerTensor) {
  const auto bytes = MakeSnapshot(/*block_tokens=*/32);
  HttpObjectServer server(bytes);
  auto s = Snapshot::Open(server.Url(), Fast());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  for (Kind k : {Kind::kK, Kind::kV}) DecodeAll(**s, *(*s)->FindTensor(17, k));
  // Open, the file header (deferred to the first block read) and one merged GET per tensor.
  EXPECT_LE(server.gets(), 4u);
  const IoStats io = (*s)->io_stats();
  const uint64_t layer_bytes = bytes.size() / kLayers;
  EXPECT_LT(io.bytes_fetched, 65536 + layer_bytes + layer_bytes / 10) << io.bytes_fetched << " of " << bytes.size();
  // A token range fetches only the blocks holding it (32-row blocks: rows 40..70 are blocks 1, 2).
  const size_t before = server.gets();
  const uint64_t fetched = (*s)->io_stats().bytes_fetched;
  std::vector<uint16_t> out(30 * kHeads * kDim);
  ASSERT_TRUE((*s)->Decode(*(*s)->FindTensor(3, Kind::kV), 40, 70, DType::kF16, out.data()).ok());
  EXPECT_EQ(server.gets(), before + 1);
  EXPECT_LT((*s)->io_stats().bytes_fetched - fetched, 2 * 32 * kHeads * kDim * 2 + 2 * 128 + 128);
}

TEST(Remote, LargeFooterCostsASecondRequestOnly) {
  const auto bytes = MakeSnapshot(/*block_tokens=*/8);  // 1920 blocks: a footer of ~100 KB
  HttpObjectServer server(bytes);
  OpenOptions o = Fast();
  o.remote.open_suffix_bytes = 4096;
  auto s = Snapshot::Open(server.Url(), o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_GT((*s)->footer_bytes(), 4096u);
  EXPECT_EQ(server.gets(), 2u);
}

TEST(Remote, RetriesTransientFaultsAndCountsThem) {
  const auto bytes = MakeSnapshot();
  HttpObjectServer server(bytes);
  auto s = Snapshot::Open(server.Url(), Fast());
  ASSERT_TRUE(s.ok());
  auto local = Snapshot::OpenBytes(bytes.data(), bytes.size(), "local");
  server.fail_500 = 2;  // two 503s, then the answer
  EXPECT_EQ(DecodeAll(**s, 0), DecodeAll(**local, 0));
  server.truncate = 1;  // a body cut short, then the answer
  EXPECT_EQ(DecodeAll(**s, 5), DecodeAll(**local, 5));
  server.drop = 1;  // a connection closed without an answer
  EXPECT_EQ(DecodeAll(**s, 9), DecodeAll(**local, 9));
  // Our retries: the two 503s and the short body; libcurl itself may retry a request on a
  // kept-alive connection the server closed, which is not counted here.
  EXPECT_GE((*s)->io_stats().retries, 3u);
}

TEST(Remote, PersistentFaultsAreClearErrors) {
  const auto bytes = MakeSnapshot();
  HttpObjectServer server(bytes);
  auto s = Snapshot::Open(server.Url(), Fast());
  ASSERT_TRUE(s.ok());
  std::vector<uint16_t> out(uint64_t(kTokens) * kHeads * kDim);
  server.truncate = 100;
  Status st = (*s)->Decode(0, 0, kTokens, DType::kF16, out.data());
  EXPECT_EQ(st.code(), StatusCode::kIoError);
  EXPECT_NE(st.ToString().find(server.Url()), std::string::npos) << st.ToString();
  EXPECT_NE(st.ToString().find("after 4 attempts"), std::string::npos) << st.ToString();
  server.truncate = 0;
  server.wrong_range = 100;
  st = (*s)->Decode(1, 0, kTokens, DType::kF16, out.data());
  EXPECT_NE(st.ToString().find("Content-Range"), std::string::npos) << st.ToString();
  server.wrong_range = 0;
  server.fail_500 = 100;
  st = (*s)->Decode(2, 0, kTokens, DType::kF16, out.data());
  EXPECT_NE(st.ToString().find("HTTP 503"), std::string::npos) << st.ToString();
}

TEST(Remote, ObjectReplacedAfterOpenIsAnErrorNeverMixedData) {
  auto bytes = MakeSnapshot();
  HttpObjectServer server(bytes);
  auto s = Snapshot::Open(server.Url(), Fast());
  ASSERT_TRUE(s.ok());
  bytes[bytes.size() / 2] ^= 1;
  server.Replace(bytes);
  std::vector<uint16_t> out(uint64_t(kTokens) * kHeads * kDim);
  Status st = (*s)->Decode(10, 0, kTokens, DType::kF16, out.data());
  EXPECT_EQ(st.code(), StatusCode::kIoError);
  EXPECT_NE(st.message().find("changed since it was opened"), std::string::npos) << st.ToString();
}

TEST(Remote, DeniedAndMissingObjectsNameTheUrlButNoSecret) {
  HttpObjectServer server(MakeSnapshot());
  server.status_override = 404;
  auto s = Snapshot::Open(server.Url(), Fast());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().ToString().find("no such object (HTTP 404)"), std::string::npos) << s.status().ToString();
  EXPECT_EQ(s.status().file(), server.Url());
  // user:password in an http URL never reaches a message
  server.status_override = 403;
  const std::string with_user = "http://alice:hunter2@" + server.Url().substr(7);
  s = Snapshot::Open(with_user, Fast());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().ToString().find("access denied (HTTP 403)"), std::string::npos) << s.status().ToString();
  EXPECT_EQ(s.status().ToString().find("hunter2"), std::string::npos) << s.status().ToString();
  EXPECT_EQ(s.status().file(), server.Url());
}

TEST(Remote, SignedRequestsNeverPrintTheSecret) {
  HttpObjectServer server(MakeSnapshot());
  server.status_override = 403;
  ::setenv("AWS_ENDPOINT_URL", server.Url("").c_str(), 1);
  ::setenv("AWS_ACCESS_KEY_ID", "AKTEST", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "SECRETSECRET", 1);
  auto s = Snapshot::Open("s3://bkt/obj.mqkv", Fast());
  ::unsetenv("AWS_ENDPOINT_URL");
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ASSERT_FALSE(s.ok());
  const std::string msg = s.status().ToString();
  EXPECT_NE(msg.find("s3://bkt/obj.mqkv"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[Test403]"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("SECRETSECRET"), std::string::npos) << msg;
  ASSERT_FALSE(server.requests().empty());
  EXPECT_NE(server.requests()[0].authorization.find("AWS4-HMAC-SHA256 Credential=AKTEST/"), std::string::npos);
  EXPECT_EQ(server.requests()[0].authorization.find("SECRETSECRET"), std::string::npos);
}

TEST(Remote, ServerGoneMidReadIsAnErrorNotACrash) {
  const auto bytes = MakeSnapshot();
  auto server = std::make_unique<HttpObjectServer>(bytes);
  OpenOptions o = Fast();
  o.remote.connect_timeout_ms = 500;
  auto s = Snapshot::Open(server->Url(), o);
  ASSERT_TRUE(s.ok());
  server.reset();  // the store goes away
  std::vector<uint16_t> out(uint64_t(kTokens) * kHeads * kDim);
  Status st = (*s)->Decode(4, 0, kTokens, DType::kF16, out.data());
  EXPECT_EQ(st.code(), StatusCode::kIoError) << st.ToString();
  EXPECT_NE(st.message().find("after 4 attempts"), std::string::npos) << st.ToString();
}

TEST(Remote, ServerIgnoringRangeIsRefusedClearly) {
  HttpObjectServer server(MakeSnapshot());
  server.ignore_range = true;
  auto s = Snapshot::Open(server.Url(), Fast());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("more bytes than were asked for"), std::string::npos) << s.status().ToString();
}

TEST(Remote, WholeFileReadsOfOtherFormatsAndSequentialReadAhead) {
  const auto bytes = MakeSnapshot();
  HttpObjectServer server(bytes);
  // verify_all_blocks walks every header and then every block in order: read-ahead keeps the
  // request count far below the 60 blocks.
  auto s = Snapshot::Open(server.Url(), [] {
    OpenOptions o = Fast();
    o.verify_all_blocks = true;
    return o;
  }());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_LT(server.gets(), 20u) << server.gets();
  EXPECT_LT((*s)->io_stats().bytes_fetched, bytes.size() + bytes.size() / 4);
}

// mqinfo's accounting reads every block header; headers of large blocks are disjoint ranges,
// fetched in parallel over several connections, and the accounting equals the local file's.
TEST(Remote, HeaderWalkOfLargeBlocksIsParallelAndExact) {
  const auto bytes = MakeSnapshot(0, "f32");  // 60 blocks of 128 KiB: headers more than 64 KiB apart
  HttpObjectServer server(bytes);
  auto s = Snapshot::Open(server.Url(), Fast());
  ASSERT_TRUE(s.ok());
  auto remote = AccountSnapshot(**s);
  ASSERT_TRUE(remote.ok()) << remote.status().ToString();
  auto local_snap = Snapshot::OpenBytes(bytes.data(), bytes.size(), "local");
  auto local = AccountSnapshot(**local_snap);
  ASSERT_TRUE(local.ok());
  ASSERT_EQ(remote->tensors.size(), local->tensors.size());
  for (size_t i = 0; i < local->tensors.size(); ++i) EXPECT_EQ(remote->tensors[i].block_bytes, local->tensors[i].block_bytes);
  EXPECT_EQ((*s)->io_stats().requests, 1u + 60u);  // open, one per block header (the file header rides with block 0's)
  EXPECT_LT((*s)->io_stats().bytes_fetched, 65536u + 64u + 60u * 128u + 1u);
}

TEST(Remote, UrlsResolveAndWritesNeedS3) {
  ::setenv("AWS_REGION", "eu-west-3", 1);
  auto u = io::ResolveUrl("s3://my-bucket/dir/a b.mqkv");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->http_url, "https://my-bucket.s3.eu-west-3.amazonaws.com/dir/a%20b.mqkv");
  ::setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/", 1);
  u = io::ResolveUrl("s3://my-bucket/k");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->http_url, "http://127.0.0.1:9000/my-bucket/k");  // a custom endpoint: path-style
  ::setenv("MQKV_S3_ADDRESSING", "virtual", 1);
  EXPECT_EQ(io::ResolveUrl("s3://b/k")->http_url, "http://b.127.0.0.1:9000/k");
  ::setenv("MQKV_S3_ADDRESSING", "sideways", 1);
  EXPECT_FALSE(io::ResolveUrl("s3://b/k").ok());
  ::unsetenv("MQKV_S3_ADDRESSING");
  ::unsetenv("AWS_ENDPOINT_URL");
  ::unsetenv("AWS_REGION");
  EXPECT_FALSE(io::ResolveUrl("s3://bucket-only").ok());
  EXPECT_FALSE(io::ResolveUrl("s3:///key").ok());
  auto w = Writer::Create("http://127.0.0.1:1/x.mqkv");
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(w.status().message().find("use s3://"), std::string::npos);
}

// A caller's own ByteSource (e.g. an engine's storage) serves a Snapshot like a file does.
TEST(Remote, AnyByteSourceServesASnapshot) {
  const auto bytes = MakeSnapshot();
  struct Counting : ByteSource {
    const std::vector<uint8_t>* b;
    std::string n = "counting";
    std::atomic<int> reads{0};
    const std::string& name() const override { return n; }
    uint64_t size() const override { return b->size(); }
    Result<ByteRange> Read(uint64_t off, uint64_t len) override {
      ++reads;
      if (off > b->size() || len > b->size() - off) return IoError("past the end");
      return ByteRange{b->data() + off, len, nullptr};
    }
  };
  auto src = std::make_shared<Counting>();
  src->b = &bytes;
  auto s = Snapshot::Open(src);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto local = Snapshot::OpenBytes(bytes.data(), bytes.size(), "local");
  EXPECT_EQ(DecodeAll(**s, 7), DecodeAll(**local, 7));
  EXPECT_GT(src->reads.load(), 2);
  EXPECT_EQ((*s)->BlockBytes(0), nullptr);  // not addressable in memory
}

}  // namespace
}  // namespace mqkv
