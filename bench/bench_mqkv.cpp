// mqkv CPU benchmarks (issue 3 "Performance", issue 8). Names, so bench/report.py can pair them:
//   memcpy/<bytes>                          the same machine's memcpy of a given size
//   decode/<config>/<f16|f32>/<isa>         one block of kValues values, GB/s of output
//   encode/<config>/<isa>                   kEncodeValues fp32 values (4 MiB, cache-resident), GB/s of input
//   encode_big/<config>/<isa>               kValues fp32 values (64 MiB, past the LLC), GB/s of input
//                                           (<isa> scalar = the reference encoder; codebook: scalar only)
//   ggml/<q4_0|q8_0>/f32                    ggml's to_float on kValues values (peer; skipped if absent)
//   open/<MiB>                              Snapshot::Open + index of a 64-tensor file of that size
//   layer/one, layer/all                    decode one layer (K and V) vs every layer of a file
//   threads/<n>                             decode of the 2-bit block split over n threads
//   threads/decode/<n>                      Snapshot::Decode(..., threads = n) of a 16384-token 3-bit tensor -> f16
//   tensor/<config>[/b1024]/f16             Snapshot::Decode (one thread) of a 16384-token K tensor -> f16, GB/s
//                                           of output; `prerope_*` = the same codec with keys before RoPE
//                                           (the host rotation pass after the block decode); b1024 = the
//                                           tensor written in blocks of 1024 tokens (--max-block-tokens)
// bench/run.sh pins the single-core ones to one CPU. Set MQKV_BENCH_QUICK=1 for a smoke run.
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <glob.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "format/container.h"
#include "mqkv/mqkv.h"
#include "mqkv/simd.h"
#include "codec/registry.h"

using namespace mqkv;
namespace fs = std::filesystem;

namespace {

const bool kQuick = std::getenv("MQKV_BENCH_QUICK") != nullptr;
// 16384 tokens x 8 KV heads x 128 dims: 32 MiB of fp16 output, past the last-level cache.
const uint32_t kTokens = kQuick ? 512 : 16384, kHeads = 8, kDim = 128;
const uint64_t kValues = uint64_t(kTokens) * kHeads * kDim;
const uint64_t kEncodeValues = uint64_t(kQuick ? 64 : 1024) * kHeads * kDim;  // 4 MiB of fp32 input

void Die(const std::string& what, const Status& s) {
  std::fprintf(stderr, "bench_mqkv: %s: %s\n", what.c_str(), s.ToString().c_str());
  std::exit(1);
}

std::vector<float> Rows(uint64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

struct Block {
  BlockHeader h{};
  std::vector<uint8_t> payload;
  BlockView view() const { return BlockView{&h, payload.data()}; }
};

Block Build(const CodecSpec& spec, const float* x, BlockShape shape) {
  EncodedBlock eb;
  if (Status s = EncodeBlock(spec, x, shape, &eb); !s.ok()) Die("encode " + spec.ToString(), s);
  std::array<uint64_t, kNumParts> sizes{};
  for (int p = 0; p < kNumParts; ++p) sizes[p] = eb.parts[p].size();
  if (Status s = format::LayoutParts(sizes, &eb.header); !s.ok()) Die("layout", s);
  Block b;
  b.h = eb.header;
  b.payload.assign(eb.header.payload_bytes, 0);
  for (int p = 0; p < kNumParts; ++p)
    if (!eb.parts[p].empty()) std::memcpy(b.payload.data() + eb.header.parts[p].offset, eb.parts[p].data(), eb.parts[p].size());
  return b;
}

// Output / scratch buffers, allocated and touched once.
std::vector<uint8_t>& OutBuf() {
  static std::vector<uint8_t> b(kValues * 4, 1);
  return b;
}
std::vector<uint8_t>& SrcBuf() {
  static std::vector<uint8_t> b(kValues * 4, 2);
  return b;
}

struct Config {
  const char* name;
  const char* spec;
};
const Config kConfigs[] = {
    {"affine_b2_g64", "affine:bits=2,group=64"},
    {"affine_b3_g64", "affine:bits=3,group=64"},
    {"affine_b4_g64", "affine:bits=4,group=64"},
    {"affine_b8_g64", "affine:bits=8,group=64"},
    {"affine_b3_g64_meta4", "affine_seven_level_3bit_g64_meta4"},
    {"affine_b3_g32", "affine_seven_level_3bit_g32"},
    {"affine_b2_channel_g32", "affine:bits=2,axis=channel,group=32"},
    {"hadamard_b2_g64_meta8", "hadamard_affine_four_level_2bit_g64_meta8"},
    {"hadamard_b2_g32", "hadamard_affine_four_level_2bit_g32"},
    {"hadamard_b3_g64", "affine:bits=3,group=64,rotate=hadamard"},
    {"hadamard_b4_g64", "affine:bits=4,group=64,rotate=hadamard"},
    {"codebook_b2_channel_sink1", "sink1_channelwise_four_level_2bit"},
    {"codebook_b4_g32", "codebook:bits=4,group=32,levels=-2.73/-2.07/-1.62/-1.26/-0.94/-0.66/-0.39/-0.13/0.13/0.39/0.66/0.94/1.26/1.62/2.07/2.73"},
    // Entropy-coded codes (format 1.3): one rANS stream per block. scalar = the spec's reference
    // rANS decoder + the scalar dequantizer; an ISA = htscodecs' decoder (its own best SIMD path)
    // + that ISA's 8-bit dequantizer.
    {"rans_affine_l8_g64_meta4", "affine:levels=8,group=64,meta=4,entropy=rans"},
    {"rans_affine_l6_channel_g64_meta4", "affine:levels=6,group=64,meta=4,axis=channel,entropy=rans"},
    {"rans_hadamard_l6_g64_meta4", "affine:levels=6,group=64,meta=4,rotate=hadamard,entropy=rans"},
};

CodecSpec Spec(const char* text) {
  Result<CodecSpec> s = CodecSpec::Parse(text);
  if (!s.ok()) Die(std::string("spec ") + text, s.status());
  return *s;
}

// ---- memcpy --------------------------------------------------------------------------------

void BM_Memcpy(benchmark::State& st, uint64_t bytes) {
  uint8_t* dst = OutBuf().data();
  const uint8_t* src = SrcBuf().data();
  for (auto _ : st) {
    std::memcpy(dst, src, bytes);
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(bytes));
}

// ---- decode / encode ---------------------------------------------------------------------------

void BM_Decode(benchmark::State& st, const Block* b, DType t, std::string isa) {
  const Backend be = isa == "scalar" ? Backend::kScalar : Backend::kSimd;
  if (be == Backend::kSimd) {
    if (Status s = ForceSimdArch(isa); !s.ok()) {
      st.SkipWithError(s.message().c_str());
      return;
    }
  }
  const Codec* c = GetCodec(b->h.codec);
  uint8_t* dst = OutBuf().data();
  for (auto _ : st) {
    if (Status s = c->Decode(b->view(), 0, b->h.n_tokens, t, dst, be); !s.ok()) {
      st.SkipWithError(s.ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(kValues * DTypeSize(t)));
  (void)ForceSimdArch("auto");
}

void BM_DecodeSmall(benchmark::State& st, const Block* b, std::string isa) {
  const uint64_t values = uint64_t(b->h.n_tokens) * b->h.n_heads * b->h.head_dim;
  const Backend be = isa == "scalar" ? Backend::kScalar : Backend::kSimd;
  if (be == Backend::kSimd) (void)ForceSimdArch(isa);
  const Codec* c = GetCodec(b->h.codec);
  uint8_t* dst = OutBuf().data();
  for (auto _ : st) {
    (void)c->Decode(b->view(), 0, b->h.n_tokens, DType::kF16, dst, be);
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(values * 2));
  (void)ForceSimdArch("auto");
}

// x holds at least `values` fp32 values; the block is values / (kHeads * kDim) tokens.
void BM_Encode(benchmark::State& st, CodecSpec spec, const std::vector<float>* x, uint64_t values, std::string isa) {
  if (Status s = ForceSimdArch(isa); !s.ok()) {
    st.SkipWithError(s.message().c_str());
    return;
  }
  const BlockShape shape{uint32_t(values / (kHeads * kDim)), kHeads, kDim};
  EncodedBlock eb;
  for (auto _ : st) {
    if (Status s = EncodeBlock(spec, x->data(), shape, &eb); !s.ok()) {
      st.SkipWithError(s.ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(eb.parts[0].data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(values * 4));
  (void)ForceSimdArch("auto");
}

// ---- ggml peer (dlopen at run time) --------------------------------------------------------------

using ToFloat = void (*)(const void*, float*, int64_t);
using QuantizeChunk = size_t (*)(int, const float*, void*, int64_t, int64_t, int64_t, const float*);

struct Ggml {
  void* handle = nullptr;
  std::string path, why;
  QuantizeChunk quantize = nullptr;
  const void* (*traits)(int) = nullptr;
};

// struct ggml_type_traits has changed layout over time; accept the two known ones after
// checking the name, block size and block bytes of the type.
ToFloat GgmlToFloat(const Ggml& g, int type, const char* name, int64_t blck, size_t tsize) {
  const uint8_t* t = static_cast<const uint8_t*>(g.traits(type));
  if (!t) return nullptr;
  const char* tn;
  std::memcpy(&tn, t, sizeof tn);
  if (!tn || std::strcmp(tn, name) != 0) return nullptr;
  int64_t b;
  std::memcpy(&b, t + 8, 8);
  if (b != blck) return nullptr;
  size_t s;
  ToFloat f = nullptr;
  std::memcpy(&s, t + 24, 8);  // {name, blck_size, blck_size_interleave, type_size, is_quantized, to_float}
  if (s == tsize) {
    std::memcpy(&f, t + 40, sizeof f);
    return f;
  }
  std::memcpy(&s, t + 16, 8);  // {name, blck_size, type_size, is_quantized, to_float}
  if (s == tsize) std::memcpy(&f, t + 32, sizeof f);
  return f;
}

const Ggml& LoadGgml() {
  static const Ggml g = [] {
    Ggml r;
    std::vector<std::string> cands;
    if (const char* e = std::getenv("MQKV_GGML_LIB")) cands.push_back(e);
    const char* cache = std::getenv("MQKV_CACHE");
    const char* home = std::getenv("HOME");
    const std::string root = cache ? cache : std::string(home ? home : "") + "/.cache/mqkv";
    for (const char* pat : {"/venv/lib/python3*/site-packages/llama_cpp/lib/libggml.so",
                            "/venv/lib/python3*/site-packages/llama_cpp/lib/libggml-base.so",
                            "/venv/lib/python3*/site-packages/llama_cpp/libggml.so"}) {
      glob_t gl{};
      if (glob((root + pat).c_str(), 0, nullptr, &gl) == 0)
        for (size_t i = 0; i < gl.gl_pathc; ++i) cands.push_back(gl.gl_pathv[i]);
      globfree(&gl);
    }
    if (cands.empty()) {
      r.why = "no libggml under " + root + "/venv (llama-cpp-python not installed); set MQKV_GGML_LIB to point at one";
      return r;
    }
    for (const std::string& c : cands) {
      void* h = dlopen(c.c_str(), RTLD_NOW | RTLD_GLOBAL);
      if (!h) {
        r.why = dlerror();
        continue;
      }
      auto q = reinterpret_cast<QuantizeChunk>(dlsym(h, "ggml_quantize_chunk"));
      auto t = reinterpret_cast<const void* (*)(int)>(dlsym(h, "ggml_get_type_traits"));
      if (q && t) {
        r.handle = h;
        r.path = c;
        r.quantize = q;
        r.traits = t;
        r.why.clear();
        return r;
      }
      r.why = c + " lacks ggml_quantize_chunk / ggml_get_type_traits";
    }
    return r;
  }();
  return g;
}

void BM_Ggml(benchmark::State& st, int type, const char* name, size_t tsize) {
  const Ggml& g = LoadGgml();
  if (!g.handle) {
    st.SkipWithError(("ggml peer skipped: " + g.why).c_str());
    return;
  }
  const ToFloat to_float = GgmlToFloat(g, type, name, 32, tsize);
  if (!to_float) {
    st.SkipWithError(("ggml peer skipped: unknown ggml_type_traits layout in " + g.path).c_str());
    return;
  }
  static std::vector<float> x = Rows(kValues, 11);
  std::vector<uint8_t> q(kValues / 32 * tsize);
  g.quantize(type, x.data(), q.data(), 0, int64_t(kValues / kDim), kDim, nullptr);
  float* dst = reinterpret_cast<float*>(OutBuf().data());
  for (auto _ : st) {
    to_float(q.data(), dst, int64_t(kValues));
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(kValues * 4));
  st.SetLabel(g.path);
}

// ---- files -------------------------------------------------------------------------------------

fs::path BenchDir() {
  static const fs::path d = [] {
    fs::path p = fs::temp_directory_path() / ("mqkv_bench_" + std::to_string(::getpid()));
    fs::create_directories(p);
    return p;
  }();
  return d;
}

// A file of `layers` layers x (K, V) tensors (32: 64 tensors), all holding copies of one encoded block.
std::string WriteFile(const std::string& name, const CodecSpec& spec, uint32_t tokens, uint32_t layers = 32) {
  const std::string path = (BenchDir() / name).string();
  const std::vector<float> x = Rows(uint64_t(tokens) * kHeads * kDim, 5);
  EncodedBlock eb;
  if (Status s = EncodeBlock(spec, x.data(), BlockShape{tokens, kHeads, kDim}, &eb); !s.ok()) Die("encode", s);
  WriterOptions wo;
  wo.fsync = false;
  auto w = Writer::Create(path, wo);
  if (!w.ok()) Die("create " + path, w.status());
  ModelInfo m;
  m.architecture = "bench";
  m.n_layer = layers;
  m.n_head = m.n_head_kv = kHeads;
  m.head_dim_k = m.head_dim_v = kDim;
  (*w)->SetModel(m);
  for (uint32_t l = 0; l < layers; ++l)
    for (Kind k : {Kind::kK, Kind::kV}) {
      TensorDesc d;
      d.layer = l;
      d.kind = k;
      d.n_heads = kHeads;
      d.head_dim = kDim;
      d.n_tokens = tokens;
      if (Status s = (*w)->AddEncodedTensor(d, spec.ToString(), {eb}); !s.ok()) Die("write " + path, s);
    }
  if (Status s = (*w)->Finish(); !s.ok()) Die("finish " + path, s);
  return path;
}

void BM_Open(benchmark::State& st, uint32_t mib) {
  // Raw fp16 rows: 64 tensors x tokens x 8 x 128 x 2 bytes = mib MiB.
  const uint32_t tokens = mib * 8;
  static std::vector<std::string> made;
  const std::string path = WriteFile("open_" + std::to_string(mib) + ".mqkv", Spec("f16"), tokens);
  made.push_back(path);
  uint64_t bytes = 0, tensors = 0;
  for (auto _ : st) {
    auto s = Snapshot::Open(path);
    if (!s.ok()) {
      st.SkipWithError(s.status().ToString().c_str());
      break;
    }
    tensors = (*s)->tensors().size();
    bytes = (*s)->file_bytes();
    benchmark::DoNotOptimize((*s)->FindTensor(31, Kind::kV));
  }
  st.counters["file_MiB"] = double(bytes) / (1 << 20);
  st.counters["tensors"] = double(tensors);
  fs::remove(path);
}

std::unique_ptr<Snapshot>& LayerFile() {
  static std::unique_ptr<Snapshot> s = [] {
    const std::string path = WriteFile("layers.mqkv", Spec("affine_seven_level_3bit_g64_meta4"), kQuick ? 64 : 1024);
    auto r = Snapshot::Open(path);
    if (!r.ok()) Die("open " + path, r.status());
    return std::move(*r);
  }();
  return s;
}

void BM_Layer(benchmark::State& st, bool all) {
  Snapshot& s = *LayerFile();
  const uint32_t tokens = s.tensors()[0].n_tokens;
  std::vector<uint16_t> out(uint64_t(tokens) * kHeads * kDim);
  std::vector<size_t> which;
  if (all) {
    for (size_t i = 0; i < s.tensors().size(); ++i) which.push_back(i);
  } else {
    which = {*s.FindTensor(16, Kind::kK), *s.FindTensor(16, Kind::kV)};
  }
  for (auto _ : st)
    for (size_t t : which) {
      if (Status e = s.Decode(t, 0, tokens, DType::kF16, out.data()); !e.ok()) {
        st.SkipWithError(e.ToString().c_str());
        return;
      }
      benchmark::DoNotOptimize(out.data());
    }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(which.size() * out.size() * 2));
  st.counters["layers"] = all ? 32.0 : 1.0;
}

// Snapshot::Decode with a thread count: one tensor of the decode block's shape (16384 tokens,
// main 3-bit preset) -> f16, 32 MiB of output, past the LLC.
void BM_DecodeThreads(benchmark::State& st, unsigned n) {
  static std::unique_ptr<Snapshot> s = [] {
    const std::string path = WriteFile("threads.mqkv", Spec("affine_seven_level_3bit_g64_meta4"), kTokens, 1);
    auto r = Snapshot::Open(path);
    if (!r.ok()) Die("open " + path, r.status());
    return std::move(*r);
  }();
  uint8_t* dst = OutBuf().data();
  for (auto _ : st) {
    if (Status e = s->Decode(0, 0, kTokens, DType::kF16, dst, Backend::kAuto, n); !e.ok()) {
      st.SkipWithError(e.ToString().c_str());
      return;
    }
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(kValues * 2));
}

// Snapshot::Decode of one K tensor (decode-block shape, one thread) written by the real writer,
// with a RoPE-facts model so `prerope=1` specs apply: what the rotation pass costs beside the codec.
void BM_TensorDecode(benchmark::State& st, std::string spec_text, uint32_t block_tokens) {
  const std::string path =
      (BenchDir() / ("tensor_" + std::to_string(std::hash<std::string>{}(spec_text)) + "_" + std::to_string(block_tokens) + ".mqkv")).string();
  std::unique_ptr<Snapshot> s;
  {
    const std::vector<float> x = Rows(kValues, 5);
    auto w = Writer::Create(path, {.max_block_tokens = block_tokens, .fsync = false});
    if (!w.ok()) Die("create " + path, w.status());
    ModelInfo m;
    m.architecture = "bench";
    m.n_layer = 1;
    m.n_head = m.n_head_kv = kHeads;
    m.head_dim_k = m.head_dim_v = kDim;
    m.rope_type = "norm";
    m.rope_base = 10000.0f;
    m.k_rope = KRope::kPostRope;
    (*w)->SetModel(m);
    TensorDesc d;
    d.kind = Kind::kK;
    d.n_heads = kHeads;
    d.head_dim = kDim;
    d.n_tokens = kTokens;
    if (Status e = (*w)->AddTensor(d, x.data(), Spec(spec_text.c_str())); !e.ok()) Die("write " + path, e);
    if (Status e = (*w)->Finish(); !e.ok()) Die("finish " + path, e);
    auto r = Snapshot::Open(path);
    if (!r.ok()) Die("open " + path, r.status());
    s = std::move(*r);
  }
  uint8_t* dst = OutBuf().data();
  for (auto _ : st) {
    if (Status e = s->Decode(0, 0, kTokens, DType::kF16, dst, Backend::kAuto, 1); !e.ok()) {
      st.SkipWithError(e.ToString().c_str());
      return;
    }
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(kValues * 2));
}

void BM_Threads(benchmark::State& st, const Block* b, int n) {
  const Codec* c = GetCodec(b->h.codec);
  uint8_t* dst = OutBuf().data();
  const uint64_t row_bytes = uint64_t(kHeads) * kDim * 2;
  for (auto _ : st) {
    std::vector<std::thread> ts;
    for (int i = 0; i < n; ++i)
      ts.emplace_back([&, i] {
        const uint32_t r0 = uint32_t(uint64_t(kTokens) * i / n), r1 = uint32_t(uint64_t(kTokens) * (i + 1) / n);
        (void)c->Decode(b->view(), r0, r1, DType::kF16, dst + r0 * row_bytes, Backend::kAuto);
      });
    for (auto& t : ts) t.join();
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(kValues * 2));
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);

  static std::vector<std::unique_ptr<Block>> blocks;
  const std::vector<float> x = Rows(kValues, 1);
  static const std::vector<float> xe = Rows(kEncodeValues, 2);

  benchmark::RegisterBenchmark("memcpy/f16_out", BM_Memcpy, kValues * 2);
  benchmark::RegisterBenchmark("memcpy/f32_out", BM_Memcpy, kValues * 4);
  benchmark::RegisterBenchmark("memcpy/encode_in", BM_Memcpy, kEncodeValues * 4);
  benchmark::RegisterBenchmark("memcpy/encode_big_in", BM_Memcpy, kValues * 4);
  const std::vector<std::string> isas = SimdArchs();  // best first, "scalar" last
  for (const Config& cfg : kConfigs) {
    const CodecSpec spec = Spec(cfg.spec);
    blocks.push_back(std::make_unique<Block>(Build(spec, x.data(), BlockShape{kTokens, kHeads, kDim})));
    const Block* b = blocks.back().get();
    for (DType t : {DType::kF16, DType::kF32})
      for (const std::string& isa : isas)
        benchmark::RegisterBenchmark(("decode/" + std::string(cfg.name) + "/" + DTypeName(t) + "/" + isa).c_str(), BM_Decode,
                                     b, t, isa)
            ;
  }
  // Encode, in cache (4 MiB of input) and past the LLC (the decode block's 64 MiB of fp32 input):
  // the SIMD encoder under each ISA and the scalar reference; codebook has the reference only.
  for (const auto& [prefix, input, values] : {std::tuple{"encode/", &xe, kEncodeValues}, std::tuple{"encode_big/", &x, kValues}})
    for (const Config& cfg : kConfigs) {
      const CodecSpec spec = Spec(cfg.spec);
      for (const std::string& isa : isas) {
        if (spec.codec != CodecId::kAffine && isa != "scalar") continue;
        benchmark::RegisterBenchmark((prefix + std::string(cfg.name) + "/" + isa).c_str(), BM_Encode, spec, input, values, isa);
      }
    }
  // In-cache regime: a 256-token block (512 KiB of fp16 output) beside memcpy of that size.
  const uint32_t small_tokens = 256;
  const uint64_t small_values = uint64_t(small_tokens) * kHeads * kDim;
  benchmark::RegisterBenchmark("memcpy_small/f16_out", BM_Memcpy, small_values * 2);
  for (const Config& cfg : kConfigs) {
    const std::string n = cfg.name;
    if (n != "affine_b2_g64" && n != "affine_b3_g64" && n != "affine_b4_g64" && n != "hadamard_b3_g64") continue;
    blocks.push_back(std::make_unique<Block>(Build(Spec(cfg.spec), x.data(), BlockShape{small_tokens, kHeads, kDim})));
    for (const std::string& isa : isas)  // every SIMD ISA: an AVX-512 host measures its AVX2 path too
      if (isa != "scalar")
        benchmark::RegisterBenchmark(("decode_small/" + n + "/f16/" + isa).c_str(), BM_DecodeSmall, blocks.back().get(), isa);
  }
  benchmark::RegisterBenchmark("ggml/q4_0/f32", BM_Ggml, 2, "q4_0", size_t(18));
  benchmark::RegisterBenchmark("ggml/q8_0/f32", BM_Ggml, 8, "q8_0", size_t(34));
  for (uint32_t mib : {1u, 8u, 64u, 256u, 1024u}) {
    if (kQuick && mib > 8) break;
    benchmark::RegisterBenchmark(("open/" + std::to_string(mib)).c_str(), BM_Open, mib);
  }
  benchmark::RegisterBenchmark("layer/one", BM_Layer, false);
  benchmark::RegisterBenchmark("layer/all", BM_Layer, true);
  const int cores = std::max(1u, std::thread::hardware_concurrency());
  for (int n = 1; n <= cores; n *= 2)
    benchmark::RegisterBenchmark(("threads/" + std::to_string(n)).c_str(), BM_Threads, blocks.front().get(), n)->UseRealTime();
  if ((cores & (cores - 1)) != 0)
    benchmark::RegisterBenchmark(("threads/" + std::to_string(cores)).c_str(), BM_Threads, blocks.front().get(), cores)->UseRealTime();
  for (unsigned n = 1; n <= unsigned(cores); n *= 2)
    benchmark::RegisterBenchmark(("threads/decode/" + std::to_string(n)).c_str(), BM_DecodeThreads, n)->UseRealTime();

  for (const auto& [name, spec] : std::vector<std::pair<std::string, std::string>>{
           {"rans_affine_l6_g128_meta8_channel_sink1", "affine:levels=6,group=128,meta=8,axis=channel,entropy=rans,sinks=1"},
           {"prerope_rans_affine_l6_g128_meta8_channel_sink1", "affine:levels=6,group=128,meta=8,axis=channel,entropy=rans,sinks=1,prerope=1"},
           {"affine_b3_g64_meta4_channel", "affine:bits=3,group=64,meta=4,axis=channel"},
           {"prerope_affine_b3_g64_meta4_channel", "affine:bits=3,group=64,meta=4,axis=channel,prerope=1"},
           {"rans_hadamard_l5_g64_meta4_sink1", "affine:levels=5,group=64,meta=4,rotate=hadamard,entropy=rans,sinks=1"}}) {
    benchmark::RegisterBenchmark(("tensor/" + name + "/f16").c_str(), BM_TensorDecode, spec, 0u);
    if (spec.find("entropy=rans") != std::string::npos)  // blocks of 1024 tokens: each block's codes stay in L2
      benchmark::RegisterBenchmark(("tensor/" + name + "/b1024/f16").c_str(), BM_TensorDecode, spec, 1024u);
  }

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::error_code ec;
  fs::remove_all(BenchDir(), ec);
  return 0;
}
