// Writer atomicity and crash safety (spec/FORMAT.md, "Writing"; issue 6): the target path holds
// its previous contents or a complete new file, never a partial one; temporary files of dead
// writers are removed by the next successful write; output is deterministic.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>

#include "mqkv/mqkv.h"
#include "support.h"
#include "format/test_hooks.h"

using namespace mqkv;
using mqkv::testing::ReadFile;
using mqkv::testing::TempDir;
using mqkv::testing::WriteFile;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kLayers = 8, kTokens = 256, kHeads = 8, kDim = 64;  // 8 x 2 tensors of 512 KiB (f32)

std::vector<float> Rows(uint32_t salt) {
  std::vector<float> v(uint64_t(kTokens) * kHeads * kDim);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float((i * 2654435761u + salt) % 1000) / 100.0f;
  return v;
}

// Writes a snapshot of kLayers layers; `after_tensor(n)` runs after n tensors have been added
// (n = 1 .. 2 * kLayers). Returns the writer's final status.
Status WriteSnapshot(const std::string& path, uint32_t salt, const std::function<void(int)>& after_tensor = {},
                     WriterOptions opts = {.zstd_level = 0, .max_block_tokens = 64, .fsync = false}) {
  MQKV_ASSIGN_OR_RETURN(auto w, Writer::Create(path, opts));
  ModelInfo m;
  m.architecture = "llama";
  m.n_layer = kLayers;
  m.metadata = {{"salt", std::to_string(salt)}};
  w->SetModel(m);
  const auto rows = Rows(salt);
  const CodecSpec spec = CodecSpec::Parse("f32").value();
  int n = 0;
  for (uint32_t l = 0; l < kLayers; ++l)
    for (Kind k : {Kind::kK, Kind::kV}) {
      TensorDesc d{.layer = l, .kind = k, .n_heads = kHeads, .head_dim = kDim, .n_tokens = kTokens, .positions = {}, .source_dtype = "", .rope = {}};
      MQKV_RETURN_IF_ERROR(w->AddTensor(d, rows.data(), spec));
      if (after_tensor) after_tensor(++n);
    }
  return w->Finish();
}

std::vector<std::string> Listing(const TempDir& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.dir())) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

int CountTemps(const TempDir& dir, const std::string& target) {
  int n = 0;
  for (const auto& name : Listing(dir)) n += name.rfind("." + target + ".tmp-", 0) == 0;
  return n;
}

// The file at `path` is a complete snapshot written with `salt`.
void ExpectGood(const std::string& path, uint32_t salt) {
  auto s = Snapshot::Open(path, {.verify_all_blocks = true});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ((*s)->tensors().size(), 2 * kLayers);
  EXPECT_EQ((*s)->model().metadata.at(0).second, std::to_string(salt));
  auto v = (*s)->DecodeF32(2 * kLayers - 1, 0, kTokens);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, Rows(salt));
}

// Forks a writer of `path` that stops after `stop_after` tensors (0: right after Create,
// 2 * kLayers + 1: after Finish), reports through a pipe, and is SIGKILLed there.
void KillWriterAt(const std::string& path, int stop_after, uint32_t salt) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    auto stop = [&](int n) {
      if (n != stop_after) return;
      char c = 'x';
      if (::write(fds[1], &c, 1) != 1) ::_exit(3);
      for (;;) ::pause();
    };
    auto w = Writer::Create(path, {.zstd_level = 0, .max_block_tokens = 64, .fsync = false});
    if (!w.ok()) ::_exit(2);
    if (stop_after == 0) stop(0);
    w->reset();
    Status s = WriteSnapshot(path, salt, stop);
    if (!s.ok()) ::_exit(2);
    stop(2 * kLayers + 1);
    ::_exit(4);  // not reached unless stop_after is out of range
  }
  ::close(fds[1]);
  char c = 0;
  ASSERT_EQ(::read(fds[0], &c, 1), 1) << "writer child did not reach stop point " << stop_after;
  ::close(fds[0]);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

}  // namespace

TEST(Writer, AbandonedWriterLeavesTargetAndNoTempFile) {
  TempDir dir;
  const std::string path = dir.Path("snap.mqkv");
  ASSERT_TRUE(WriteSnapshot(path, 1).ok());
  const auto before = ReadFile(path);
  {
    auto w = Writer::Create(path, {.fsync = false});
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(CountTemps(dir, "snap.mqkv"), 1);
    const auto rows = Rows(2);
    TensorDesc d{.layer = 0, .kind = Kind::kK, .n_heads = kHeads, .head_dim = kDim, .n_tokens = kTokens, .positions = {}, .source_dtype = "", .rope = {}};
    ASSERT_TRUE((*w)->AddTensor(d, rows.data(), CodecSpec::Parse("f16").value()).ok());
  }  // destroyed without Finish
  EXPECT_EQ(ReadFile(path), before);
  EXPECT_EQ(Listing(dir), std::vector<std::string>{"snap.mqkv"});
}

TEST(Writer, FinishRejectingTheModelLeavesTarget) {
  TempDir dir;
  const std::string path = dir.Path("snap.mqkv");
  ASSERT_TRUE(WriteSnapshot(path, 1).ok());
  const auto before = ReadFile(path);
  {
    auto w = Writer::Create(path, {.fsync = false});
    ASSERT_TRUE(w.ok());
    ModelInfo m;
    m.tokens = {1, 2, 3};
    m.positions = {0, 1};
    (*w)->SetModel(m);
    Status s = (*w)->Finish();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(ReadFile(path), before);
  EXPECT_EQ(Listing(dir), std::vector<std::string>{"snap.mqkv"});
}

// A real I/O failure mid-write: the child's file size limit makes write(2) fail with EFBIG.
TEST(Writer, IoFailureMidWriteLeavesTargetAndNoTempFile) {
  TempDir dir;
  const std::string path = dir.Path("snap.mqkv");
  ASSERT_TRUE(WriteSnapshot(path, 1).ok());
  const auto before = ReadFile(path);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl {3u << 20, 3u << 20};  // 3 MiB: less than the ~8 MiB snapshot
    ::setrlimit(RLIMIT_FSIZE, &rl);
    Status s = WriteSnapshot(path, 2);
    ::_exit(s.code() == StatusCode::kIoError && s.file() == path ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the writer did not report an I/O error naming the target";
  EXPECT_EQ(ReadFile(path), before);
  EXPECT_EQ(Listing(dir), std::vector<std::string>{"snap.mqkv"});
}

TEST(Writer, CreateInMissingDirectoryIsAnIoError) {
  TempDir dir;
  auto w = Writer::Create(dir.Path("no/such/dir/x.mqkv"));
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kIoError);
  EXPECT_NE(w.status().ToString().find("no/such/dir"), std::string::npos);
}

// SIGKILL at several points: the target keeps the previous good file; each dead writer leaves a
// temporary file, and the next successful write removes them all.
TEST(Writer, SigkillAtSeveralPointsNeverLeavesAPartialTarget) {
  TempDir dir;
  const std::string path = dir.Path("snap.mqkv");
  ASSERT_TRUE(WriteSnapshot(path, 1).ok());
  const auto good = ReadFile(path);
  int killed = 0;
  for (int stop : {0, 1, 5, 2 * int(kLayers)}) {  // after Create, after 1, 5, all tensors (before Finish)
    KillWriterAt(path, stop, 100 + stop);
    ++killed;
    ASSERT_EQ(ReadFile(path), good) << "target changed by a writer killed after " << stop << " tensors";
    ExpectGood(path, 1);
    EXPECT_EQ(CountTemps(dir, "snap.mqkv"), killed) << "a SIGKILLed writer leaves its temporary file";
  }
  // A writer killed after Finish has replaced the target completely.
  KillWriterAt(path, 2 * kLayers + 1, 7);
  ExpectGood(path, 7);
  EXPECT_EQ(CountTemps(dir, "snap.mqkv"), 0) << "its successful commit removed the temporary files of the killed writers";
}

TEST(Writer, NextSuccessfulWriteRemovesStaleTempsOfDeadWriters) {
  TempDir dir;
  const std::string path = dir.Path("snap.mqkv");
  KillWriterAt(path, 3, 5);  // no previous file: the target stays absent
  EXPECT_FALSE(fs::exists(path));
  KillWriterAt(path, 2 * kLayers, 6);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(CountTemps(dir, "snap.mqkv"), 2);
  // Unowned look-alikes: another target's temp file, and names that are not exactly the pattern.
  WriteFile(dir.Path(".other.mqkv.tmp-abcdef"), {1});
  WriteFile(dir.Path(".snap.mqkv.tmp-abcdefg"), {1});
  WriteFile(dir.Path(".snap.mqkv.tmp-abc"), {1});
  fs::create_directory(dir.Path(".snap.mqkv.tmp-dir123"));
  // A live writer of the same target: its temporary file is locked and must survive.
  auto live = Writer::Create(path, {.fsync = false});
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(CountTemps(dir, "snap.mqkv"), 6);  // 2 stale, 3 look-alikes, 1 live

  ASSERT_TRUE(WriteSnapshot(path, 9, {}, {.zstd_level = 0, .max_block_tokens = 0, .fsync = true}).ok());
  ExpectGood(path, 9);
  EXPECT_TRUE(fs::exists(dir.Path(".other.mqkv.tmp-abcdef")));
  EXPECT_TRUE(fs::exists(dir.Path(".snap.mqkv.tmp-abcdefg")));
  EXPECT_TRUE(fs::exists(dir.Path(".snap.mqkv.tmp-abc")));
  EXPECT_TRUE(fs::exists(dir.Path(".snap.mqkv.tmp-dir123")));
  EXPECT_EQ(CountTemps(dir, "snap.mqkv"), 4) << "the live writer's file and the 3 look-alikes remain; the 2 stale ones are gone";
  // The live writer still finishes, and its own commit leaves no temporary file of the target.
  ASSERT_TRUE((*live)->Finish().ok());
  EXPECT_EQ(CountTemps(dir, "snap.mqkv"), 3);
  auto s = Snapshot::Open(path);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE((*s)->tensors().empty());
}

TEST(Writer, OutputIsDeterministic) {
  TempDir dir;
  for (int zstd : {0, 3}) {
    const WriterOptions o{.zstd_level = zstd, .max_block_tokens = 100, .fsync = false};
    ASSERT_TRUE(WriteSnapshot(dir.Path("a.mqkv"), 4, {}, o).ok());
    ASSERT_TRUE(WriteSnapshot(dir.Path("b.mqkv"), 4, {}, o).ok());
    EXPECT_EQ(ReadFile(dir.Path("a.mqkv")), ReadFile(dir.Path("b.mqkv"))) << "zstd level " << zstd;
  }
}

namespace {

// Offsets past 4 GiB (issue 20): a sparse hole puts the second tensor's blocks, the footer and the
// tail beyond 2^32, and everything still opens, checks, accounts and decodes bit for bit. The
// file has 4 GiB of logical size but only a few KiB on disk.
TEST(Writer, BlocksPastFourGiBOnASparseFile) {
  TempDir dir;
  const std::string path = dir.Path("sparse.mqkv");
  const uint64_t hole = (4ull << 30) + 64 * 1000;
  std::vector<float> a = mqkv::testing::RandomRows(64 * 2 * 32, 1), b = mqkv::testing::RandomRows(64 * 2 * 32, 2);
  auto desc = [](Kind kind) {
    TensorDesc d;
    d.n_heads = 2;
    d.head_dim = 32;
    d.n_tokens = 64;
    d.kind = kind;
    return d;
  };
  const auto v_spec = *CodecSpec::Parse("affine:bits=3,group=32,sinks=4");
  for (float& x : a) x = round_to_f16(x);
  {
    WriterOptions wo;
    wo.fsync = false;
    wo.max_block_tokens = 16;
    auto w = Writer::Create(path, wo);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->AddTensor(desc(Kind::kK), a.data(), *CodecSpec::Parse("f16")).ok());
    Status st = WriterTestHooks::SkipBytes(**w, hole);
    if (!st.ok()) GTEST_SKIP() << "no sparse files here: " << st.ToString();
    ASSERT_TRUE((*w)->AddTensor(desc(Kind::kV), b.data(), v_spec).ok());
    ASSERT_TRUE((*w)->Finish().ok());
  }
  EXPECT_GT(fs::file_size(path), 4ull << 30);
  auto s = Snapshot::Open(path, {.verify_all_blocks = true});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const auto& blocks = (*s)->blocks();
  EXPECT_GT(blocks.back().offset, 1ull << 32);
  EXPECT_GT((*s)->footer_offset(), 1ull << 32);
  auto k = (*s)->DecodeF32(0, 0, 64);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(*k, a);
  // V decodes the same as the same codec on an ordinary file
  auto direct = Writer::Create(dir.Path("plain.mqkv"));
  ASSERT_TRUE(direct.ok());
  ASSERT_TRUE((*direct)->AddTensor(desc(Kind::kV), b.data(), v_spec).ok());
  ASSERT_TRUE((*direct)->Finish().ok());
  auto plain = Snapshot::Open(dir.Path("plain.mqkv"));
  ASSERT_TRUE(plain.ok());
  auto v_far = (*s)->DecodeF32(1, 10, 60), v_near = (*plain)->DecodeF32(0, 10, 60);
  ASSERT_TRUE(v_far.ok() && v_near.ok());
  EXPECT_EQ(*v_far, *v_near);
  // Accounting assigns the hole to padding and still adds up to the file size.
  auto acc = AccountSnapshot(**s);
  ASSERT_TRUE(acc.ok()) << acc.status().ToString();
  EXPECT_EQ(acc->total.stored_bytes + acc->query_bytes, (*s)->file_bytes());
  EXPECT_GE(acc->tensors[0].breakdown.padding, hole);
}

}  // namespace

// A snapshot built in memory is byte for byte the file Writer::Create writes; an unfinished one
// leaves the caller's vector as it was.
TEST(Writer, InMemoryBytesEqualTheFileAndUnfinishedLeavesTheVector) {
  TempDir dir;
  const std::string path = dir.Path("snap.mqkv");
  const auto rows = Rows(3);
  TensorDesc d{.layer = 0, .kind = Kind::kK, .n_heads = kHeads, .head_dim = kDim, .n_tokens = kTokens, .positions = {}, .source_dtype = "", .rope = {}};
  const CodecSpec spec = CodecSpec::Parse("affine:bits=3,group=8,meta=4").value();
  auto write = [&](Result<std::unique_ptr<Writer>> w) {
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_TRUE((*w)->AddTensor(d, rows.data(), spec).ok());
    ASSERT_TRUE((*w)->Finish().ok());
  };
  write(Writer::Create(path, {.zstd_level = 3, .fsync = false}));
  std::vector<uint8_t> mem;
  write(Writer::CreateInMemory(&mem, "<memory>", {.zstd_level = 3}));
  EXPECT_EQ(mem, ReadFile(path));
  auto s = Snapshot::OpenBytes(mem.data(), mem.size(), "<memory>", {.verify_all_blocks = true});
  ASSERT_TRUE(s.ok()) << s.status().ToString();

  std::vector<uint8_t> keep = {1, 2, 3};
  {
    auto w = Writer::CreateInMemory(&keep);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->AddTensor(d, rows.data(), spec).ok());
  }  // destroyed without Finish
  EXPECT_EQ(keep, (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_EQ(Writer::CreateInMemory(nullptr).status().code(), StatusCode::kInvalidArgument);
}
