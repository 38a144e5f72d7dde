// Writes the container golden vectors (spec/vectors/container/README.md):
//   make_container_vectors [OUT_DIR]     (default: <source>/spec/vectors/container)
// For each vector: <name>.mqkv and <name>.expected.f32 (every tensor decoded to f32,
// little-endian, tensors in index order). Output is deterministic: rerunning gives the same bytes.
#include <cstdio>
#include <fstream>

#include "container_vectors.h"

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : std::string(MQKV_SOURCE_DIR) + "/spec/vectors/container";
  for (const mqkv::vectors::Vector& v : mqkv::vectors::AllVectors()) {
    std::vector<float> expected;
    if (mqkv::Status s = mqkv::vectors::WriteVector(v, dir, &expected); !s.ok()) {
      std::fprintf(stderr, "make_container_vectors: %s: %s\n", v.name.c_str(), s.ToString().c_str());
      return 1;
    }
    const std::string exp_path = dir + "/" + v.name + ".expected.f32";
    std::ofstream f(exp_path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(expected.data()), static_cast<std::streamsize>(expected.size() * 4));
    if (!f) {
      std::fprintf(stderr, "make_container_vectors: %s: cannot write\n", exp_path.c_str());
      return 1;
    }
    std::printf("%s.mqkv (%zu values)\n", v.name.c_str(), expected.size());
  }
  return 0;
}
