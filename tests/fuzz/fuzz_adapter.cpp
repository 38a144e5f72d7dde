// Fuzz target for one external-format parser (safetensors, npy, npz, llama.cpp state files),
// chosen at compile time with MQKV_FUZZ_FORMAT. Parsers read by path, so the input goes
// through a file in a RAM-backed temp dir.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "mqkv/kvset.h"

namespace {
std::string TempPath() {
  const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return std::string(dir) + "/mqkv-fuzz-" + std::to_string(getpid()) + ".bin";
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = TempPath();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  auto set = mqkv::ReadKvSet(path, mqkv::FileFormat::MQKV_FUZZ_FORMAT);
  (void)set;
  std::remove(path.c_str());
  return 0;
}
