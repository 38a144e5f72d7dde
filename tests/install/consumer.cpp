// Reads an mqkv file through the installed library and prints its tensor count.
#include <mqkv/mqkv.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  auto s = mqkv::Snapshot::Open(argv[1]);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.status().ToString().c_str());
    return 1;
  }
  std::printf("%zu tensors, version %s\n", (*s)->tensors().size(), MQKV_VERSION_STRING);
  return 0;
}
