// Writes the codec golden vectors (spec/vectors/codecs/README.md):
//   make_codec_vectors [OUT_DIR]     (default: <source>/spec/vectors/codecs)
// For each vector: <name>.mqkv, <name>.expected.f32 (the tensor decoded to f32, little-endian),
// and README.md listing specs and inputs. Deterministic: rerunning gives the same bytes.
#include <cstdio>
#include <filesystem>

#include "codec_vectors.h"

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : std::string(MQKV_SOURCE_DIR) + "/spec/vectors/codecs";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (mqkv::Status s = mqkv::codec_vectors::WriteAll(dir); !s.ok()) {
    std::fprintf(stderr, "make_codec_vectors: %s\n", s.ToString().c_str());
    return 1;
  }
  for (const auto& v : mqkv::codec_vectors::AllVectors()) std::printf("%s/%s.mqkv\n", dir.c_str(), v.name.c_str());
  return 0;
}
