// Exhaustive corruption of small sample files (issue 6; spec/FORMAT.md, "Reader obligations"):
// every byte inverted, every bit of the file header, block headers, footer and tail flipped, and
// every truncation. Open + verify of every block + decode of every tensor must fail with an error,
// or, only where the change lies in bytes no checksum covers (padding), succeed with exactly the
// original data. Any crash, hang or sanitizer report fails the suite.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "format/container.h"
#include "mqkv/mqkv.h"
#include "support.h"

using namespace mqkv;
using mqkv::testing::ReadFile;
using mqkv::testing::SourcePath;
using mqkv::testing::TempDir;
using mqkv::testing::WriteFile;

namespace {

struct Decoded {
  ModelInfo model;
  std::vector<std::string> codecs;
  std::vector<std::vector<float>> tensors;
};

// Everything a reader does with a file: open, verify every block, decode every tensor (and its
// spec). Returns the first error.
Status Exercise(const std::string& path, Decoded* out) {
  MQKV_ASSIGN_OR_RETURN(auto snap, Snapshot::Open(path));
  for (size_t b = 0; b < snap->blocks().size(); ++b) MQKV_RETURN_IF_ERROR(snap->VerifyBlock(b));
  out->model = snap->model();
  out->codecs.clear();
  out->tensors.clear();
  for (size_t t = 0; t < snap->tensors().size(); ++t) {
    MQKV_ASSIGN_OR_RETURN(CodecSpec spec, snap->TensorSpec(t));
    out->codecs.push_back(spec.ToString() + "|" + snap->tensors()[t].codec + "|" + std::to_string(snap->tensors()[t].layer) +
                          KindName(snap->tensors()[t].kind));
    MQKV_ASSIGN_OR_RETURN(auto v, snap->DecodeF32(t, 0, snap->tensors()[t].n_tokens));
    out->tensors.push_back(std::move(v));
  }
  return Status::OK();
}

bool SameBits(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), a[i].size() * 4) != 0) return false;
  return true;
}

class Corruption : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    const std::string src = SourcePath(std::string("spec/vectors/container/") + GetParam());
    bytes = ReadFile(src);
    Status s = Exercise(src, &original);
    ASSERT_TRUE(s.ok()) << s.ToString();
    auto snap = Snapshot::Open(src);
    ASSERT_TRUE(snap.ok());
    footer_offset = (*snap)->footer_offset();
    for (const BlockInfo& bi : (*snap)->blocks()) {
      block_headers.push_back(bi.offset);
      for (uint64_t p = bi.offset + bi.length; p < format::AlignUp(bi.offset + bi.length, kBlockAlign); ++p) padding.insert(p);
    }
  }

  // Writes `b` and exercises it; an accepted file must be an uncovered-byte change with the
  // original data. `at` is the changed offset (for the padding check), or -1 for truncations.
  void Check(const std::vector<uint8_t>& b, int64_t at, const std::string& what) {
    Put(b);
    Decoded d;
    Status s = Exercise(path, &d);
    ++cases;
    if (!s.ok()) {
      ASSERT_NE(s.code(), StatusCode::kOk);
      ASSERT_FALSE(s.message().empty()) << what;
      ASSERT_NE(s.code(), StatusCode::kInternal) << what << ": " << s.ToString();
      return;
    }
    ++accepted;
    ASSERT_GE(at, 0) << what << ": a truncated file was accepted";
    ASSERT_TRUE(padding.count(static_cast<uint64_t>(at))) << what << ": accepted a change outside padding (byte " << at << ")";
    ASSERT_EQ(d.model, original.model) << what;
    ASSERT_EQ(d.codecs, original.codecs) << what;
    ASSERT_TRUE(SameBits(d.tensors, original.tensors)) << what << ": accepted file decodes to different data";
  }

  // Cases go to an in-memory file (memfd) opened by its /proc path: thousands of rewrites of a
  // disk file would spend the time in the file system's writeback, not in the reader.
  void Put(const std::vector<uint8_t>& b) {
    if (memfd < 0) {
      memfd = ::memfd_create("mqkv-corrupt", MFD_CLOEXEC);
      path = memfd >= 0 ? "/proc/self/fd/" + std::to_string(memfd) : dir.Path("corrupt.mqkv");
    }
    if (memfd < 0) return WriteFile(path, b);
    ASSERT_EQ(::ftruncate(memfd, 0), 0);
    ASSERT_EQ(::pwrite(memfd, b.data(), b.size(), 0), static_cast<ssize_t>(b.size()));
  }
  void TearDown() override {
    if (memfd >= 0) ::close(memfd);
  }

  TempDir dir;
  int memfd = -1;
  std::string path;
  std::vector<uint8_t> bytes;
  Decoded original;
  uint64_t footer_offset = 0;
  std::vector<uint64_t> block_headers;
  std::set<uint64_t> padding;
  int cases = 0, accepted = 0;
};

TEST_P(Corruption, EveryByteInverted) {
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto b = bytes;
    b[i] ^= 0xFF;
    Check(b, static_cast<int64_t>(i), "byte " + std::to_string(i) + " inverted");
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(accepted, static_cast<int>(padding.size())) << "every padding byte (and nothing else) is uncovered";
}

TEST_P(Corruption, EveryBitOfHeadersFooterAndTail) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges = {{0, format::kFileHeaderBytes},
                                                       {footer_offset, bytes.size()}};  // footer + tail
  for (uint64_t h : block_headers) ranges.push_back({h, h + kBlockHeaderBytes});
  for (auto [lo, hi] : ranges)
    for (uint64_t i = lo; i < hi; ++i)
      for (int bit = 0; bit < 8; ++bit) {
        auto b = bytes;
        b[i] ^= static_cast<uint8_t>(1u << bit);
        Check(b, static_cast<int64_t>(i), "byte " + std::to_string(i) + " bit " + std::to_string(bit));
        if (HasFatalFailure()) return;
      }
  EXPECT_EQ(accepted, 0) << "every header, footer and tail bit is covered by a check";
}

TEST_P(Corruption, EveryTruncation) {
  for (size_t n = 0; n < bytes.size(); ++n) {
    Check(std::vector<uint8_t>(bytes.begin(), bytes.begin() + n), -1, "truncated to " + std::to_string(n));
    if (HasFatalFailure()) return;
  }
  // Appended garbage moves the tail: also refused.
  auto b = bytes;
  b.insert(b.end(), 64, 0);
  Check(b, -1, "64 bytes appended");
}

INSTANTIATE_TEST_SUITE_P(Samples, Corruption, ::testing::Values("raw_f32.mqkv", "zstd_f16.mqkv", "multiblock_f16.mqkv"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           std::string n = i.param;
                           return n.substr(0, n.find('.'));
                         });

}  // namespace
