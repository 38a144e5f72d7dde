// mqkv_remote: makes test snapshots and measures what reading one over the network costs
// (issue 16; bench/remote/run.sh writes bench/results/remote.md).
//
//   mqkv_remote make OUT --mib N [--layers 30] [--block-tokens 0]
//       a llama-shaped f16 snapshot of about N MiB (8 KV heads x 128 dims, random rows)
//   mqkv_remote measure URL [--layer L] [--fraction 0.1]
//       one line per access pattern, each on a fresh open: requests, bytes fetched, share of the
//       object, wall time; then a whole-object pass (every block verified and decoded to f16)
//       and its throughput
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "mqkv/mqkv.h"

namespace {

using namespace mqkv;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

int Die(const Status& s) {
  std::fprintf(stderr, "mqkv_remote: %s\n", s.ToString().c_str());
  return 1;
}

const char* Arg(int argc, char** argv, const char* name, const char* def) {
  for (int i = 0; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return def;
}

int Make(const std::string& out, double mib, uint32_t layers, uint32_t block_tokens) {
  const uint32_t heads = 8, dim = 128;
  // 2 tensors per layer, 2 bytes per value
  const uint32_t tokens = std::max<uint32_t>(1, uint32_t(mib * 1048576.0 / (2.0 * layers * heads * dim * 2)));
  WriterOptions wo;
  wo.max_block_tokens = block_tokens;
  auto w = Writer::Create(out, wo);
  if (!w.ok()) return Die(w.status());
  ModelInfo m;
  m.architecture = "llama";
  m.n_layer = layers;
  m.n_head = 32;
  m.n_head_kv = heads;
  m.head_dim_k = m.head_dim_v = dim;
  m.rope_type = "norm";
  m.rope_base = 500000.0f;
  m.tokens.resize(tokens);
  for (uint32_t i = 0; i < tokens; ++i) m.tokens[i] = int32_t(i % 32000);
  (*w)->SetModel(m);
  std::vector<float> rows(uint64_t(tokens) * heads * dim);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  const auto spec = CodecSpec::Parse("f16");
  for (uint32_t l = 0; l < layers; ++l)
    for (Kind k : {Kind::kK, Kind::kV}) {
      for (float& v : rows) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        v = round_to_f16(float(int64_t(x >> 40) - (1 << 23)) * 0x1p-22f);
      }
      TensorDesc d;
      d.layer = l;
      d.kind = k;
      d.n_heads = heads;
      d.head_dim = dim;
      d.n_tokens = tokens;
      d.source_dtype = "f16";
      if (Status s = (*w)->AddTensor(d, rows.data(), *spec); !s.ok()) return Die(s);
    }
  if (Status s = (*w)->Finish(); !s.ok()) return Die(s);
  std::fprintf(stderr, "mqkv_remote: wrote %s (%u layers x %u tokens)\n", out.c_str(), layers, tokens);
  return 0;
}

void Report(const char* what, const Snapshot& s, double secs) {
  const IoStats io = s.io_stats();
  std::printf("| %s | %llu | %llu | %.2f%% | %.1f ms |\n", what, (unsigned long long)io.requests,
              (unsigned long long)io.bytes_fetched, 100.0 * double(io.bytes_fetched) / double(s.file_bytes()), secs * 1e3);
}

int Measure(const std::string& url, uint32_t layer, double fraction) {
  std::printf("| access | requests | bytes fetched | of the object | wall |\n|---|---|---|---|---|\n");
  {
    auto t0 = Clock::now();
    auto s = Snapshot::Open(url);
    if (!s.ok()) return Die(s.status());
    Report("open (tail + footer)", **s, Seconds(t0));
    auto acc = AccountSnapshot(**s);  // what mqinfo --no-verify reads: every block header
    if (!acc.ok()) return Die(acc.status());
    Report("open + every block header (mqinfo)", **s, Seconds(t0));
  }
  {
    auto t0 = Clock::now();
    auto s = Snapshot::Open(url);
    if (!s.ok()) return Die(s.status());
    for (Kind k : {Kind::kK, Kind::kV}) {
      auto t = (*s)->FindTensor(layer, k);
      if (!t) return Die(OutOfRange("no layer " + std::to_string(layer)));
      auto v = (*s)->DecodeF32(*t, 0, (*s)->tensors()[*t].n_tokens);
      if (!v.ok()) return Die(v.status());
    }
    char what[96];
    std::snprintf(what, sizeof what, "open + decode layer %u of %zu (K and V)", layer, (*s)->tensors().size() / 2);
    Report(what, **s, Seconds(t0));
  }
  {
    auto t0 = Clock::now();
    auto s = Snapshot::Open(url);
    if (!s.ok()) return Die(s.status());
    const uint32_t n = (*s)->tensors()[0].n_tokens, a = uint32_t(n * 0.45), b = a + uint32_t(n * fraction);
    for (size_t t = 0; t < (*s)->tensors().size(); ++t) {
      auto v = (*s)->DecodeF32(t, a, b);
      if (!v.ok()) return Die(v.status());
    }
    char what[96];
    std::snprintf(what, sizeof what, "open + tokens %u:%u (%.0f%%) of every layer", a, b, fraction * 100);
    Report(what, **s, Seconds(t0));
  }
  {
    auto t0 = Clock::now();
    auto s = Snapshot::Open(url);
    if (!s.ok()) return Die(s.status());
    uint64_t out_bytes = 0;
    std::vector<uint16_t> buf;
    for (size_t t = 0; t < (*s)->tensors().size(); ++t) {
      const TensorInfo& ti = (*s)->tensors()[t];
      buf.resize(uint64_t(ti.n_tokens) * ti.n_heads * ti.head_dim);
      if (Status st = (*s)->Decode(t, 0, ti.n_tokens, DType::kF16, buf.data()); !st.ok()) return Die(st);
      out_bytes += buf.size() * 2;
    }
    const double secs = Seconds(t0);
    Report("whole object: verify + decode every block to f16", **s, secs);
    std::printf("\nwhole-object pass: %.1f MB in %.3f s = %.0f MB/s (of the object)\n", (*s)->file_bytes() / 1e6, secs,
                (*s)->file_bytes() / 1e6 / secs);
    (void)out_bytes;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "make") == 0)
    return Make(argv[2], std::atof(Arg(argc, argv, "--mib", "64")), uint32_t(std::atoi(Arg(argc, argv, "--layers", "30"))),
                uint32_t(std::atoi(Arg(argc, argv, "--block-tokens", "0"))));
  if (argc >= 3 && std::strcmp(argv[1], "measure") == 0)
    return Measure(argv[2], uint32_t(std::atoi(Arg(argc, argv, "--layer", "15"))), std::atof(Arg(argc, argv, "--fraction", "0.1")));
  std::fprintf(stderr, "usage: mqkv_remote make OUT --mib N [--layers L] [--block-tokens B]\n"
                       "       mqkv_remote measure URL [--layer L] [--fraction F]\n");
  return 2;
}
