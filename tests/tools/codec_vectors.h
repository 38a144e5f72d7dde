// Golden vectors of the low-bit codecs (spec/vectors/codecs/README.md): one small snapshot per
// preset and per extra configuration, built from fixed integer-derived inputs so a second
// implementation can regenerate them. Shared by tests/tools/make_codec_vectors.cpp (writes the
// committed files) and tests/test_codec_vectors.cpp (regenerates them and compares bytes).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "mqkv/mqkv.h"
#include "support.h"

namespace mqkv::codec_vectors {

using SplitMix64 = mqkv::testing::SplitMix64;  // tests/support/support.h

// Row values [n_tokens][n_heads][head_dim] (binary32, every operation rounded, no libm):
//   g = (u1 + u2 + u3 + u4 - 2) * 1.7320508   (Irwin-Hall: mean 0, variance 1, summed left to right)
//   x = g * w(d), w(d) = 4 when d % 7 == 3 (outlier channels, as in keys), else 1
// with the u drawn in row-major order from SplitMix64{seed}. When `flat_row` is set, head 0 of
// row 1 is replaced by the constant 0.5 (a zero-range group) -- last, after any wide-range scaling.
// When `wide_range` is set, x is multiplied by 2^-(d % 16) (exact): a dynamic range that reaches
// fp8's subnormal codes.
inline std::vector<float> Inputs(uint64_t seed, uint32_t n_tokens, uint32_t n_heads, uint32_t head_dim, bool flat_row,
                                 bool wide_range = false) {
  SplitMix64 g{seed};
  std::vector<float> v(uint64_t(n_tokens) * n_heads * head_dim);
  for (uint64_t i = 0; i < v.size(); ++i) {
    float s = g.Uniform();
    s = s + g.Uniform();
    s = s + g.Uniform();
    s = s + g.Uniform();
    const uint32_t d = static_cast<uint32_t>(i % head_dim);
    v[i] = (s - 2.0f) * 1.7320508f * (d % 7 == 3 ? 4.0f : 1.0f);
    if (wide_range) v[i] = std::ldexp(v[i], -static_cast<int>(d % 16));
  }
  if (flat_row && n_tokens > 1)
    for (uint32_t d = 0; d < head_dim; ++d) v[uint64_t(1) * n_heads * head_dim + d] = 0.5f;
  return v;
}

struct Vector {
  std::string name;
  std::string spec;  // preset name or spec string
  uint32_t n_tokens, n_heads, head_dim;
  uint64_t seed;
  bool flat_row = false;
  std::string note;
  bool wide_range = false;
  std::string rope = "";  // prerope vectors: the model's RoPE type ("norm" / "neox") and base
  float rope_base = 0;
};

inline std::vector<Vector> AllVectors() {
  std::vector<Vector> v;
  uint64_t seed = 1;
  // Every preset at one K-like shape (8 rows x 2 heads x 64 dims).
  for (const std::string& p : PresetNames()) {
    std::string note = "preset";
    if (p.rfind("kivi", 0) == 0) note = "preset; its 128 residual rows cover all 8 rows (Q = 0: fp16 rows only, no codes)";
    v.push_back({p, p, 8, 2, 64, seed++, false, note});
  }
  v.push_back({"affine_b2_g16", "affine:bits=2,group=16", 6, 2, 32, 101, true, "2-bit; head 0 of row 1 is flat (scale 0)"});
  v.push_back({"affine_b4_g32_meta8", "affine:bits=4,group=32,meta=8", 6, 2, 32, 102, false, "4-bit, 8-bit meta codes"});
  v.push_back({"affine_b8_meta4", "affine:bits=8,meta=4", 6, 2, 64, 103, false, "8-bit, group = head_dim, 4-bit meta codes"});
  v.push_back({"affine_b3_channel_g8_sinks2_res4", "affine:bits=3,axis=channel,group=8,sinks=2,residual=4", 30, 1, 32, 104, false,
               "channel axis, 24 quantized rows in 3 token groups, sinks and residual"});
  v.push_back({"affine_b2_channel_g5_meta4_res3", "affine:bits=2,axis=channel,group=5,meta=4,residual=3", 20, 1, 16, 105, false,
               "channel axis, 17 quantized rows: groups 5,5,5,2; 4-bit meta codes"});
  v.push_back({"hadamard_affine_b3_hd80_meta4", "affine:bits=3,group=16,meta=4,rotate=hadamard,seed=7", 6, 2, 80, 106, false,
               "head_dim 80: Hadamard blocks of 16"});
  v.push_back({"codebook_b3_hadamard_hd96", "codebook:bits=3,group=32,levels=-2.152/-1.344/-0.756/-0.245/0.245/0.756/1.344/2.152,rotate=hadamard",
               6, 1, 96, 107, false, "3-bit codebook, absmax scale, head_dim 96: Hadamard blocks of 32"});
  v.push_back({"codebook_b1_channel_g4", "codebook:bits=1,axis=channel,group=4,levels=-1/1,scale=robust", 10, 2, 8, 108, false,
               "1-bit codebook, channel groups 4,4,2"});
  v.push_back({"codebook_b2_thresholds_sink_res", "codebook:bits=2,group=8,levels=-3/-1/1/3,thresholds=-1.5/0/2,scale=robust,sinks=1,residual=1",
               6, 2, 16, 109, true, "custom thresholds, one sink and one residual row, a flat group"});
  // fp8 (codec 5): format 1.1 files (feature bit 4).
  v.push_back({"fp8_e4m3", "fp8", 8, 2, 64, 110, false, "E4M3 codes, one fp32 scale (absmax / 448); format 1.1"});
  v.push_back({"fp8_e4m3_wide_range", "fp8", 6, 3, 40, 111, true,
               "wide range (x * 2^-(d % 16)): subnormal and zero codes; a flat head; format 1.1", true});
  v.push_back({"turbo3_hd80", "turbo3", 6, 2, 80, 112, false, "turbo3 at head_dim 80: Hadamard blocks of 16, one rms scale per 80 dims"});
  // llama.cpp's grids inside the affine codec (encoder rules; the blocks are plain affine blocks).
  v.push_back({"ggml_q4_0_flat_hd32", "ggml_q4_0", 6, 2, 32, 113, true, "q4_0 grid (scale |m|/8, minimum -8 or -7 scales) with a flat group"});
  // Entropy-coded codes (format 1.3, feature bit 5): 4-way rANS (<= 1000 codes), 32-way, verbatim.
  v.push_back({"rans_affine_l6_g32_meta4", "affine:levels=6,group=32,meta=4,entropy=rans", 6, 2, 64, 114, false,
               "6 levels, 768 codes: rANS 4x16 order 0; format 1.3"});
  v.push_back({"rans_affine_l5_channel_hadamard_sink1", "affine:levels=5,axis=channel,group=16,rotate=hadamard,sinks=1,entropy=rans", 40, 1, 32,
               115, false, "5 levels per channel, Hadamard, one fp16 sink row: 1248 codes, rANS 32x16; format 1.3"});
  v.push_back({"rans_codebook_l3_rms", "codebook:levels=-1.2/0/1.2,scale=rms,entropy=rans", 2, 1, 8, 116, false,
               "3-level codebook, 16 codes: stored verbatim (CAT) because rANS does not shrink them; format 1.3"});
  // Keys before RoPE (format 1.4, feature bit 6): the decoder rotates rows back by their positions.
  v.push_back({"prerope_norm_rans_affine_l6_channel_sink1", "affine:levels=6,axis=channel,group=16,meta=4,entropy=rans,sinks=1,prerope=1",
               24, 2, 32, 117, false, "keys before RoPE, norm pairs (2i, 2i+1), base 10000; per-channel rANS codes; format 1.4", false,
               "norm", 10000.0f});
  v.push_back({"prerope_neox_affine_b3_g32", "affine:bits=3,group=32,prerope=1", 6, 2, 64, 118, false,
               "keys before RoPE, neox pairs (i, i + 32), base 1000000; packed 3-bit codes; format 1.4", false, "neox", 1000000.0f});
  return v;
}

inline std::string Readme() {
  std::string s =
      "# Codec golden vectors\n\n"
      "Generated by `make_codec_vectors` (tests/tools/make_codec_vectors.cpp, table in\n"
      "tests/tools/codec_vectors.h); regenerate only through that tool. `test_codec_vectors` rebuilds\n"
      "every file in a temporary directory and requires identical bytes, and decodes each committed\n"
      "`.mqkv` with every CPU backend, requiring the `.expected.f32` bits exactly.\n\n"
      "Each `<name>.mqkv` is a format 1.0 snapshot (1.1 for the fp8 vectors: codec 5 needs feature bit 4;\n"
      "1.3 for the rans vectors: entropy-coded codes need feature bit 5; 1.4 for the prerope vectors: keys\n"
      "stored before RoPE need feature bit 6)\n"
      "with one tensor (layer 0, kind k, one block) holding the rows below encoded with the spec;\n"
      "`<name>.expected.f32` is that tensor decoded to binary32, little-endian, [row][head][dim]. The\n"
      "decode is normative (spec/CODECS.md), so a second implementation must reproduce `.expected.f32`\n"
      "bit for bit from the `.mqkv`. The encoder is informative: matching the `.mqkv` bytes as well\n"
      "means matching mqkv's encoder exactly.\n\n"
      "Inputs: `x[i] = (u1 + u2 + u3 + u4 - 2) * 1.7320508 * w`, binary32, each operation rounded, the sum\n"
      "taken left to right; `u = (splitmix64_next() >> 40) * 2^-24` drawn in row-major order from a\n"
      "splitmix64 generator whose state starts at `seed` (state += 0x9E3779B97F4A7C15, then the standard\n"
      "mix); `w = 4` for dims d with d % 7 == 3, else 1. \"Wide range\" (noted): x is then multiplied by\n"
      "2^-(d % 16). \"flat\": last, head 0 of row 1 is set to 0.5 in every dim (after any wide-range\n"
      "scaling, so a flat head decodes to about 0.5 in every dim).\n"
      "Snapshot model info: architecture \"codec-vector\", n_layer 1, heads and head_dim as the tensor.\n"
      "The prerope vectors also record the RoPE type and base of the table, k_rope \"post\", tokens 0..n-1\n"
      "and positions `7 + 977 * t * t` for row t (so the rotation's range reduction sees angles up to ~5e5).\n\n"
      "| name | spec | rows x heads x dim | seed | flat | note |\n|---|---|---|---|---|---|\n";
  for (const Vector& v : AllVectors()) {
    char shape[64];
    std::snprintf(shape, sizeof shape, "%u x %u x %u", v.n_tokens, v.n_heads, v.head_dim);
    s += "| " + v.name + " | `" + v.spec + "` | " + shape + " | " + std::to_string(v.seed) + " | " + (v.flat_row ? "yes" : "no") +
         " | " + v.note + " |\n";
  }
  return s;
}

// Writes <dir>/<name>.mqkv and returns the decoded rows (scalar backend) in *decoded.
inline Status WriteVector(const Vector& v, const std::string& dir, std::vector<float>* decoded) {
  MQKV_ASSIGN_OR_RETURN(CodecSpec spec, CodecSpec::Parse(v.spec));
  const std::vector<float> rows = Inputs(v.seed, v.n_tokens, v.n_heads, v.head_dim, v.flat_row, v.wide_range);
  const std::string path = dir + "/" + v.name + ".mqkv";
  {
    MQKV_ASSIGN_OR_RETURN(auto w, Writer::Create(path, WriterOptions{.zstd_level = 0, .max_block_tokens = 0, .fsync = false}));
    ModelInfo m;
    m.architecture = "codec-vector";
    m.n_layer = 1;
    m.n_head = m.n_head_kv = v.n_heads;
    m.head_dim_k = m.head_dim_v = v.head_dim;
    if (!v.rope.empty()) {
      m.rope_type = v.rope;
      m.rope_base = v.rope_base;
      m.k_rope = KRope::kPostRope;
      for (uint32_t t = 0; t < v.n_tokens; ++t) {
        m.tokens.push_back(static_cast<int32_t>(t));
        m.positions.push_back(static_cast<int32_t>(7 + 977 * t * t));
      }
    }
    w->SetModel(m);
    TensorDesc d;
    d.layer = 0;
    d.kind = Kind::kK;
    d.n_heads = v.n_heads;
    d.head_dim = v.head_dim;
    d.n_tokens = v.n_tokens;
    MQKV_RETURN_IF_ERROR(w->AddTensor(d, rows.data(), spec));
    MQKV_RETURN_IF_ERROR(w->Finish());
  }
  MQKV_ASSIGN_OR_RETURN(auto snap, Snapshot::Open(path, {.verify_all_blocks = true}));
  MQKV_ASSIGN_OR_RETURN(*decoded, snap->DecodeF32(0, 0, v.n_tokens, Backend::kScalar));
  return Status::OK();
}

inline Status WriteBytes(const std::string& path, const void* data, size_t n) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  return f ? Status::OK() : IoError("cannot write " + path);
}

// Writes every vector, its .expected.f32 and README.md into `dir`.
inline Status WriteAll(const std::string& dir) {
  for (const Vector& v : AllVectors()) {
    std::vector<float> decoded;
    if (Status s = WriteVector(v, dir, &decoded); !s.ok()) return s.Prepend(v.name);
    MQKV_RETURN_IF_ERROR(WriteBytes(dir + "/" + v.name + ".expected.f32", decoded.data(), decoded.size() * 4));
  }
  const std::string readme = Readme();
  return WriteBytes(dir + "/README.md", readme.data(), readme.size());
}

}  // namespace mqkv::codec_vectors
