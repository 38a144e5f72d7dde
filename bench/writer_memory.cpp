// Peak memory of the writer (issue 13; spec/FORMAT.md, "Writing"): writes one tensor of --mib MiB
// of fp32 rows with a codec and reports how much resident memory the write added on top of the
// input, against the encoded block's size. The writer's rule: at most the encoder's parts
// (= the encoded block) plus, with zstd, one ZSTD_compressBound(payload) buffer.
//   mqkv_writer_memory --mib 1024 --codec f16 [--zstd 3] [--dir /tmp] [--check]
// --check exits 1 when an uncompressed write's peak exceeds 1.5x the encoded block + the input
// (plus 8 MiB for the allocator and the 1 MiB write buffer). Linux only (/proc/self/status, clear_refs).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include "mqkv/mqkv.h"

namespace {
uint64_t StatusKiB(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field, 0) == 0) return std::strtoull(line.c_str() + std::strlen(field), nullptr, 10);
  return 0;
}
bool ResetPeak() {  // Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  return bool(f);
}
}  // namespace

int main(int argc, char** argv) {
  uint64_t mib = 64;
  std::string codec = "f16", dir = "/tmp";
  int zstd = 0;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", a.c_str()); std::exit(2); } return argv[++i]; };
    if (a == "--mib") mib = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--codec") codec = next();
    else if (a == "--zstd") zstd = std::atoi(next().c_str());
    else if (a == "--dir") dir = next();
    else if (a == "--check") check = true;
    else { std::fprintf(stderr, "unknown argument %s\n", a.c_str()); return 2; }
  }
  auto spec = mqkv::CodecSpec::Parse(codec);
  if (!spec.ok()) { std::fprintf(stderr, "%s\n", spec.status().ToString().c_str()); return 2; }
  const uint32_t heads = 8, dim = 128;
  const uint64_t values = mib * (1u << 20) / 4;
  const uint32_t tokens = static_cast<uint32_t>(values / (heads * dim));
  const uint64_t base_kib = StatusKiB("VmRSS:");
  std::vector<float> rows(uint64_t(tokens) * heads * dim);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& v : rows) v = nd(rng);
  const uint64_t input_bytes = rows.size() * 4;
  const std::string path = dir + "/mqkv_writer_memory." + std::to_string(getpid()) + ".mqkv";

  mqkv::WriterOptions wo;
  wo.zstd_level = zstd;
  wo.fsync = false;
  const uint64_t before_kib = StatusKiB("VmRSS:");
  const bool reset = ResetPeak();
  auto w = mqkv::Writer::Create(path, wo);
  if (!w.ok()) { std::fprintf(stderr, "%s\n", w.status().ToString().c_str()); return 1; }
  mqkv::ModelInfo m;
  m.architecture = "llama";
  m.n_layer = 1;
  m.n_head = m.n_head_kv = heads;
  m.head_dim_k = m.head_dim_v = dim;
  (*w)->SetModel(m);
  mqkv::TensorDesc d;
  d.layer = 0;
  d.kind = mqkv::Kind::kK;
  d.n_heads = heads;
  d.head_dim = dim;
  d.n_tokens = tokens;
  if (auto s = (*w)->AddTensor(d, rows.data(), *spec); !s.ok()) { std::fprintf(stderr, "%s\n", s.ToString().c_str()); return 1; }
  if (auto s = (*w)->Finish(); !s.ok()) { std::fprintf(stderr, "%s\n", s.ToString().c_str()); return 1; }
  const uint64_t peak_kib = StatusKiB("VmHWM:");
  auto snap = mqkv::Snapshot::Open(path);
  if (!snap.ok()) { std::fprintf(stderr, "%s\n", snap.status().ToString().c_str()); return 1; }
  const uint64_t payload = (*snap)->BlockHeaderAt(0).value()->payload_bytes;
  const uint64_t stored = (*snap)->blocks()[0].length;
  snap->reset();
  std::remove(path.c_str());

  const double added = double(peak_kib - before_kib) * 1024.0;  // resident bytes the write added
  const double total = double(peak_kib - base_kib) * 1024.0;    // input + write, over the process baseline
  const double bound = 1.5 * double(payload) + double(input_bytes) + 8.0 * (1 << 20);
  std::printf("writer peak: %s, %llu MiB fp32 input (%u tokens x %u heads x %u dims), zstd %d: encoded payload %.1f MiB "
              "(stored %.1f MiB); the write added %.1f MiB resident = %.3fx the encoded payload; "
              "input + write %.1f MiB = %.3fx (payload + input)%s\n",
              codec.c_str(), (unsigned long long)(input_bytes >> 20), tokens, heads, dim, zstd, payload / 1048576.0,
              stored / 1048576.0, added / 1048576.0, added / double(payload), total / 1048576.0,
              total / double(payload + input_bytes), reset ? "" : " (VmHWM not reset: includes the input fill)");
  if (check && zstd == 0 && total > bound) {
    std::fprintf(stderr, "writer peak %.1f MiB exceeds 1.5x the encoded block + the input (%.1f MiB)\n", total / 1048576.0, bound / 1048576.0);
    return 1;
  }
  return 0;
}
