// mqconvert: convert a KV snapshot between mqkv, safetensors, npy/npz and llama.cpp state
// files, choosing codecs when writing mqkv. Thin over Convert (mqkv/kvset.h).
#include <cstdio>
#include <optional>

#include "mqkv/llama.h"
#include "tool.h"

using namespace mqkv;

namespace {

constexpr const char* kProg = "mqconvert";

constexpr const char* kFooter = R"(Formats (--from/--to): mqkv, safetensors, npy, npz, llama-session, llama-seq, llama-state,
llama-seq-state. The input format comes from its first bytes, then its extension; the output
format from --to, else its extension (.mqkv, .safetensors, .npy, .npz). Conventions for the
interchange formats: spec/INTEROP.md.

Codecs (mqkv output): a spec string (f32 | f16 | bf16 | fp8 | affine:bits=3,group=64,... |
codebook:... | a preset name; spec/CODECS.md). Default: the raw type of the source that holds
every value exactly (f16 for an f16 source, bf16 for bf16, else f32), so a plain conversion is
lossless.

Exit codes:
  0  ok
  2  usage: bad command line, bad codec spec or format name, option not valid for the output
  3  bad input: malformed or unsupported input file, token range outside the data
  4  verification: checksum mismatch in the input
  5  I/O: cannot open, read, write or rename
  6  internal error)";

Result<std::pair<uint32_t, uint32_t>> ParseRange(const std::string& text) {
  const auto colon = text.find(':');
  auto num = [](const std::string& s, uint32_t* out) {
    if (s.empty() || s.size() > 10) return false;
    uint64_t x = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      x = x * 10 + uint64_t(c - '0');
    }
    if (x > UINT32_MAX) return false;
    *out = static_cast<uint32_t>(x);
    return true;
  };
  uint32_t a = 0, b = 0;
  if (colon == std::string::npos || !num(text.substr(0, colon), &a) || !num(text.substr(colon + 1), &b) || a > b)
    return InvalidArgument("--tokens \"" + text + "\": expected FIRST:END with FIRST <= END (rows FIRST..END-1)");
  return std::make_pair(a, b);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Convert a KV-cache snapshot between mqkv, safetensors, npy/npz and llama.cpp state files.", kProg};
  std::string in, out, from, to, codec, k_codec, v_codec, tokens, llama_k, llama_v;
  int zstd = 0;
  uint32_t max_block_tokens = 0;
  bool quiet = false;
  app.add_option("IN", in, "input file or URL (s3://, http(s)://)")->required();
  app.add_option("OUT", out, "output file (written atomically: temp file, fsync, rename) or s3:// URL (multipart upload completed at the end)")->required();
  app.add_option("--from", from, "input format (default: from magic bytes, then extension)");
  app.add_option("--to", to, "output format (default: from the extension)");
  app.add_option("--codec", codec, "codec spec for K and V (mqkv output)");
  app.add_option("--k-codec", k_codec, "codec spec for K (overrides --codec)");
  app.add_option("--v-codec", v_codec, "codec spec for V (overrides --codec)");
  app.add_option("--tokens", tokens, "keep token rows FIRST:END only (an mqkv input decodes only the blocks holding them)");
  app.add_option("--zstd", zstd, "zstd level 1..22 for mqkv block payloads (kept only where it saves bytes)")->check(CLI::Range(0, 22));
  app.add_option("--max-block-tokens", max_block_tokens, "mqkv: at most this many token rows per block (0: one block per tensor)");
  app.add_option("--llama-type-k", llama_k, "llama.cpp output: K cache type (f32, f16, bf16, q8_0, q4_0; default: the source's)");
  app.add_option("--llama-type-v", llama_v, "llama.cpp output: V cache type");
  uint32_t head_dim_k = 0, head_dim_v = 0;
  app.add_option("--head-dim-k", head_dim_k, "llama.cpp input: elements per K head (the state does not say; default: spec/LLAMA.md's rule)");
  app.add_option("--head-dim-v", head_dim_v, "llama.cpp input: elements per V head (default: --head-dim-k, else the rule)");
  unsigned threads = 0;
  app.add_option("--threads", threads, "threads for decoding an mqkv input and encoding an mqkv output (0: all cores); the output is the same for every count")
      ->capture_default_str();
  std::string dtype;
  app.add_option("--dtype", dtype, "safetensors/npy/npz output: element type f16, bf16 (safetensors) or f32 (default: the source dtype the file records, f16 for an f16 cache)")
      ->check(CLI::IsMember({"f16", "bf16", "f32"}));
  double target_bits = 0;
  std::vector<uint16_t> rate_levels;
  app.add_option("--target-bits", target_bits,
                 "mqkv: rate control. Choose each K/V tensor's level count so the file measures at most B bits/dim (K/V values; as mqverify "
                 "counts). Needs affine codecs with entropy=rans; the choice is in each tensor's codec and metadata mqkv.rate_control")
      ->check(CLI::PositiveNumber);
  app.add_option("--rate-levels", rate_levels, "level counts --target-bits chooses from (default: 3..16,20,24,32,48,64)")
      ->delimiter(',')
      ->check(CLI::Range(3, 256));
  std::string rate_distortion;
  app.add_option("--rate-distortion", rate_distortion,
                 "what --target-bits minimizes: attention (1 - attention-output cosine, proxy queries; default) or nmse")
      ->check(CLI::IsMember({"attention", "nmse"}));
  std::string rate_queries;
  app.add_option("--rate-queries", rate_queries,
                 "queries of the attention distortion: auto (the input's Q tensors where it has them, else its keys; default) or proxy (always its keys)")
      ->check(CLI::IsMember({"auto", "proxy"}));
  std::string rope_type;
  float rope_base = 0;
  app.add_option("--rope-type", rope_type,
                 "the model's RoPE pairing (norm, neox) for an input that does not record it (llama.cpp state files); kept in an mqkv output; "
                 "needed by a prerope=1 codec")
      ->check(CLI::IsMember({"norm", "neox"}));
  app.add_option("--rope-base", rope_base, "the model's RoPE base (freq_base, e.g. 10000) for an input that does not record it; as --rope-type")
      ->check(CLI::PositiveNumber);
  app.add_flag("-q,--quiet", quiet, "print nothing on success");
  app.footer(kFooter);
  return tool::Run(app, argc, argv, [&]() -> int {
    ConvertOptions o;
    o.from = from, o.to = to, o.codec = codec, o.k_codec = k_codec, o.v_codec = v_codec;
    o.zstd = zstd, o.max_block_tokens = max_block_tokens, o.llama_type_k = llama_k, o.llama_type_v = llama_v;
    o.head_dim_k = head_dim_k, o.head_dim_v = head_dim_v, o.dtype = dtype, o.threads = threads;
    o.target_bits = target_bits, o.rate_levels = rate_levels, o.rate_distortion = rate_distortion, o.rate_queries = rate_queries;
    o.rope_type = rope_type, o.rope_base = rope_base;
    if ((!rate_levels.empty() || !rate_distortion.empty() || !rate_queries.empty()) && !target_bits)
      return tool::Fail(kProg, InvalidArgument("--rate-levels, --rate-distortion and --rate-queries need --target-bits"));
    if (!tokens.empty()) {
      auto r = ParseRange(tokens);
      if (!r.ok()) return tool::Fail(kProg, r.status());
      o.tokens = *r;
    }
    tool::Progress progress(kProg, 1);
    progress.Update(0);
    auto sum = Convert(in, out, o);
    if (!sum.ok()) return tool::Fail(kProg, sum.status());
    progress.Update(1);
    if (!quiet) {
      std::string codecs = sum->to == FileFormat::kMqkv ? ", K " + sum->k_codec + ", V " + sum->v_codec : "";
      std::printf("%s (%s) -> %s (%s): %zu tensors, %u layers, %u tokens%s\n", tool::Printable(in).c_str(), FileFormatName(sum->from),
                  tool::Printable(out).c_str(), FileFormatName(sum->to), sum->tensors, sum->layers, sum->tokens, codecs.c_str());
    }
    return tool::kExitOk;
  });
}
