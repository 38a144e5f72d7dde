// Helpers shared by the tests: temp dirs, deterministic random rows, file bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace mqkv::testing {

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

std::vector<float> RandomRows(uint64_t n, uint32_t seed, float scale = 1.0f);
std::vector<uint8_t> ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::vector<uint8_t>& bytes);
std::string SourcePath(const std::string& rel);  // path under the source tree

}  // namespace mqkv::testing
