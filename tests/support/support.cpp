#include "support.h"

#include <array>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <unistd.h>

#include <gtest/gtest.h>

#include "format/container.h"
#include "mqkv/simd.h"

namespace mqkv::testing {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "mqkv-test-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
}
TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::vector<float> RandomRows(uint64_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

void WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string SourcePath(const std::string& rel) { return std::string(MQKV_SOURCE_DIR) + "/" + rel; }

Status BuildBlock(const CodecSpec& spec, const std::vector<float>& x, BlockShape shape, Block* out) {
  EncodedBlock eb;
  MQKV_RETURN_IF_ERROR(EncodeBlock(spec, x.data(), shape, &eb));
  std::array<uint64_t, kNumParts> sizes{}, want{};
  for (int p = 0; p < kNumParts; ++p) sizes[p] = eb.parts[p].size();
  MQKV_RETURN_IF_ERROR(GetCodec(spec.codec)->PartSizes(eb.header, &want));
  // An rANS code part's size is the stream's (data-dependent): PartSizes reads it from the header,
  // which LayoutParts below fills in.
  if (eb.header.code_coding == static_cast<uint8_t>(CodeCoding::kRans)) want[kPartCodes] = sizes[kPartCodes];
  if (sizes != want) return Internal("encoder part sizes differ from PartSizes");
  MQKV_RETURN_IF_ERROR(format::LayoutParts(sizes, &eb.header));
  out->h = eb.header;
  out->payload.assign(eb.header.payload_bytes, 0);
  for (int p = 0; p < kNumParts; ++p)
    if (!eb.parts[p].empty()) std::memcpy(out->payload.data() + eb.header.parts[p].offset, eb.parts[p].data(), eb.parts[p].size());
  return Status::OK();
}

Block MustBuildBlock(const CodecSpec& spec, const std::vector<float>& x, BlockShape shape) {
  Block b;
  const Status st = BuildBlock(spec, x, shape, &b);
  EXPECT_TRUE(st.ok()) << spec.ToString() << ": " << st.ToString();
  return b;
}

std::vector<std::string> SimdOnlyArchs() {
  std::vector<std::string> v;
  for (const std::string& a : SimdArchs())
    if (a != "scalar") v.push_back(a);
  return v;
}

AutoSimdArch::~AutoSimdArch() { EXPECT_TRUE(ForceSimdArch("auto").ok()); }

}  // namespace mqkv::testing
