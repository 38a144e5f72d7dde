// mqconvert: convert a KV snapshot between mqkv, safetensors, npy/npz and llama.cpp state
// files, choosing codecs when writing mqkv. Thin over ReadKvSet / WriteKvSet.
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

Result<FileFormat> OutputFormat(const std::string& path) {
  if (auto f = FileFormatFromExtension(path)) return *f;
  Status s = InvalidArgument("cannot tell the output format from the extension; pass --to");
  return s.WithFile(path);
}

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

// The smallest raw codec that reproduces every tensor of `kind` bit for bit: the source's
// f16/bf16 when all of them say so and every value fits, else f32.
CodecSpec LosslessCodec(const KvSet& set, Kind kind) {
  bool f16 = true, bf16 = true, any = false;
  for (const KvTensor& t : set.tensors) {
    if (t.desc.kind != kind) continue;
    any = true;
    f16 = f16 && t.desc.source_dtype == "f16";
    bf16 = bf16 && t.desc.source_dtype == "bf16";
    f16 = f16 && exact_in_f16(t.data.data(), t.data.size());
    bf16 = bf16 && exact_in_bf16(t.data.data(), t.data.size());
  }
  return CodecSpec::Parse(any && f16 ? "f16" : any && bf16 ? "bf16" : "f32").value();
}

bool IsLlama(FileFormat f) { return f != FileFormat::kMqkv && f != FileFormat::kSafetensors && f != FileFormat::kNpy && f != FileFormat::kNpz; }

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
  app.add_flag("-q,--quiet", quiet, "print nothing on success");
  app.footer(kFooter);
  return tool::Run(app, argc, argv, [&]() -> int {
    FileFormat in_fmt, out_fmt;
    {
      auto f = from.empty() ? DetectFileFormat(in) : ParseFileFormat(from);
      if (!f.ok()) return tool::Fail(kProg, f.status());
      in_fmt = *f;
      auto g = to.empty() ? OutputFormat(out) : ParseFileFormat(to);
      if (!g.ok()) return tool::Fail(kProg, g.status());
      out_fmt = *g;
    }
    const bool to_mqkv = out_fmt == FileFormat::kMqkv;
    if (!to_mqkv && (!codec.empty() || !k_codec.empty() || !v_codec.empty() || zstd || max_block_tokens))
      return tool::Fail(kProg, InvalidArgument(std::string("--codec, --k-codec, --v-codec, --zstd and --max-block-tokens apply to mqkv output, not ") +
                                              FileFormatName(out_fmt)));
    if (!IsLlama(out_fmt) && (!llama_k.empty() || !llama_v.empty()))
      return tool::Fail(kProg, InvalidArgument(std::string("--llama-type-k/-v apply to llama.cpp output, not ") + FileFormatName(out_fmt)));
    if (!dtype.empty() && (to_mqkv || IsLlama(out_fmt)))
      return tool::Fail(kProg, InvalidArgument(std::string("--dtype applies to safetensors, npy and npz output, not ") + FileFormatName(out_fmt) +
                                              (to_mqkv ? " (use --codec)" : " (use --llama-type-k/-v)")));
    WriteOptions wopts;
    wopts.dtype = dtype;
    wopts.threads = threads;
    std::optional<CodecSpec> kspec, vspec;
    for (auto [text, dst] : {std::pair{k_codec.empty() ? codec : k_codec, &kspec}, std::pair{v_codec.empty() ? codec : v_codec, &vspec}}) {
      if (text.empty()) continue;
      auto s = CodecSpec::Parse(text);
      if (!s.ok()) return tool::Fail(kProg, Status(s.status()).Prepend("codec \"" + text + "\""));
      *dst = *s;
    }
    ReadOptions ropts;
    ropts.threads = threads;
    if (!tokens.empty()) {
      auto r = ParseRange(tokens);
      if (!r.ok()) return tool::Fail(kProg, r.status());
      ropts.tokens = *r;
    }

    tool::Progress progress(kProg, 2);
    progress.Update(0);
    const bool llama_in = in_fmt != FileFormat::kMqkv && in_fmt != FileFormat::kSafetensors && in_fmt != FileFormat::kNpy &&
                          in_fmt != FileFormat::kNpz;
    if ((head_dim_k || head_dim_v) && !llama_in)
      return tool::Fail(kProg, InvalidArgument(std::string("--head-dim-k/-v apply to llama.cpp input, not ") + FileFormatName(in_fmt)));
    Result<KvSet> set = Status(StatusCode::kInternal, "unread");
    if (llama_in && (head_dim_k || head_dim_v)) {
      set = ReadLlamaKvSet(in, in_fmt, LlamaReadOptions{head_dim_k, head_dim_v ? head_dim_v : head_dim_k});
      if (set.ok() && ropts.tokens) {
        Status st = SliceTokens(&*set, ropts.tokens->first, ropts.tokens->second);
        if (!st.ok()) set = st.WithFile(in);
      }
    } else {
      set = ReadKvSet(in, in_fmt, ropts);
    }
    if (!set.ok()) return tool::Fail(kProg, Status(set.status()).WithFile(in));
    progress.Update(1);

    wopts.k_codec = kspec ? *kspec : LosslessCodec(*set, Kind::kK);
    wopts.v_codec = vspec ? *vspec : LosslessCodec(*set, Kind::kV);
    wopts.writer.zstd_level = zstd;
    wopts.writer.max_block_tokens = max_block_tokens;
    wopts.llama_type_k = llama_k;
    wopts.llama_type_v = llama_v;
    if (Status s = WriteKvSet(*set, out, out_fmt, wopts); !s.ok()) return tool::Fail(kProg, s);
    progress.Update(2);

    if (!quiet) {
      uint32_t layers = 0, rows = 0;
      for (const KvTensor& t : set->tensors)
        if (t.desc.kind != Kind::kQ) layers = std::max(layers, t.desc.layer + 1), rows = t.desc.n_tokens;
      std::string codecs = to_mqkv ? ", K " + wopts.k_codec.ToString() + ", V " + wopts.v_codec.ToString() : "";
      std::printf("%s (%s) -> %s (%s): %zu tensors, %u layers, %u tokens%s\n", tool::Printable(in).c_str(), FileFormatName(in_fmt),
                  tool::Printable(out).c_str(), FileFormatName(out_fmt), set->tensors.size(), layers, rows, codecs.c_str());
    }
    return tool::kExitOk;
  });
}
