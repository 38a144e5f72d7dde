// Helpers shared by the tests: temp dirs, deterministic random rows, file bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "mqkv/codec.h"
#include "codec/registry.h"

namespace mqkv::testing {

// One encoded block laid out as the writer lays it out (the canonical part layout), for codec
// tests that decode without a container. `payload` is exactly payload_bytes long, so an
// over-read shows under ASan.
struct Block {
  BlockHeader h{};
  std::vector<uint8_t> payload;
  BlockView view() const { return BlockView{&h, payload.data()}; }
};

// Encodes x with spec, checks the encoder's part sizes against the codec's PartSizes, and lays
// the parts out.
Status BuildBlock(const CodecSpec& spec, const std::vector<float>& x, BlockShape shape, Block* out);
// The same, failing the current test (EXPECT) on an error.
Block MustBuildBlock(const CodecSpec& spec, const std::vector<float>& x, BlockShape shape);

// The SIMD ISAs of this machine (mqkv::SimdArchs without "scalar"), and a guard that restores
// automatic ISA selection when a test that forces one ends.
std::vector<std::string> SimdOnlyArchs();
struct AutoSimdArch {
  ~AutoSimdArch();
};

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
};

// splitmix64 (Steele, Lea, Flood 2014): the only source of "random" inputs for golden vectors
// (std:: distributions differ between standard libraries).
struct SplitMix64 {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // (next >> 40) / 2^24: uniform on [0, 1), exact in binary32.
  float Uniform() { return static_cast<float>(Next() >> 40) * 0x1p-24f; }
};

std::vector<float> RandomRows(uint64_t n, uint32_t seed, float scale = 1.0f);
std::vector<uint8_t> ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::vector<uint8_t>& bytes);
std::string SourcePath(const std::string& rel);  // path under the source tree

}  // namespace mqkv::testing
