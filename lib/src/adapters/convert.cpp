// Convert (mqkv/kvset.h): one file to another, what mqconvert and mqkv.convert run. The option
// rules (which option applies to which format, the lossless default codec) live here so every
// front end refuses and defaults alike.
#include <algorithm>

#include <cmath>

#include "adapters.h"
#include "mqkv/kvset.h"
#include "mqkv/llama.h"
#include "mqkv/numeric.h"

namespace mqkv {
namespace {

Result<FileFormat> OutputFormat(const std::string& path) {
  if (auto f = FileFormatFromExtension(path)) return *f;
  Status s = InvalidArgument("cannot tell the output format from the extension; pass --to");
  return s.WithFile(path);
}

}  // namespace

CodecSpec LosslessCodec(const KvSet& set, Kind kind) {
  bool f16 = true, bf16 = true, any = false;
  for (const KvTensor& t : set.tensors) {
    if (t.desc.kind != kind) continue;
    any = true;
    f16 = f16 && t.desc.source_dtype == "f16";
    bf16 = bf16 && t.desc.source_dtype == "bf16";
    if (!f16 && !bf16) continue;
    // A lazy tensor read from f16/bf16 storage is exact without a scan; another one is loaded
    // (one at a time) and scanned.
    if (t.lazy() && !t.exact_in.empty()) {
      f16 = f16 && t.exact_in == "f16";
      bf16 = bf16 && t.exact_in == "bf16";
      continue;
    }
    std::vector<float> hold;
    auto rows = RowsOf(t, &hold);
    if (!rows.ok()) return CodecSpec::Parse("f32").value();  // the write reports the load's error
    f16 = f16 && exact_in_f16((*rows)->data(), (*rows)->size());
    bf16 = bf16 && exact_in_bf16((*rows)->data(), (*rows)->size());
  }
  return CodecSpec::Parse(any && f16 ? "f16" : any && bf16 ? "bf16" : "f32").value();
}

Result<ConvertSummary> Convert(const std::string& in, const std::string& out, const ConvertOptions& o) {
  ConvertSummary sum;
  {
    auto f = o.from.empty() ? DetectFileFormat(in) : ParseFileFormat(o.from);
    if (!f.ok()) return f.status();
    sum.from = *f;
    auto g = o.to.empty() ? OutputFormat(out) : ParseFileFormat(o.to);
    if (!g.ok()) return g.status();
    sum.to = *g;
  }
  const bool to_mqkv = sum.to == FileFormat::kMqkv;
  if (!to_mqkv && (!o.codec.empty() || !o.k_codec.empty() || !o.v_codec.empty() || o.zstd || o.max_block_tokens || o.target_bits))
    return InvalidArgument(std::string("--codec, --k-codec, --v-codec, --zstd, --max-block-tokens and --target-bits apply to mqkv output, not ") +
                           FileFormatName(sum.to));
  if (!IsLlamaFormat(sum.to) && (!o.llama_type_k.empty() || !o.llama_type_v.empty()))
    return InvalidArgument(std::string("--llama-type-k/-v apply to llama.cpp output, not ") + FileFormatName(sum.to));
  if (!o.dtype.empty() && (to_mqkv || IsLlamaFormat(sum.to)))
    return InvalidArgument(std::string("--dtype applies to safetensors, npy and npz output, not ") + FileFormatName(sum.to) +
                           (to_mqkv ? " (use --codec)" : " (use --llama-type-k/-v)"));
  if ((o.head_dim_k || o.head_dim_v) && !IsLlamaFormat(sum.from))
    return InvalidArgument(std::string("--head-dim-k/-v apply to llama.cpp input, not ") + FileFormatName(sum.from));
  if (o.zstd < 0 || o.zstd > 22) return InvalidArgument("--zstd " + std::to_string(o.zstd) + ": expected 0..22");
  std::optional<CodecSpec> kspec, vspec;
  for (auto [text, dst] : {std::pair{o.k_codec.empty() ? o.codec : o.k_codec, &kspec},
                           std::pair{o.v_codec.empty() ? o.codec : o.v_codec, &vspec}}) {
    if (text.empty()) continue;
    auto s = CodecSpec::Parse(text);
    if (!s.ok()) return Status(s.status()).Prepend("codec \"" + text + "\"");
    *dst = *s;
  }
  ReadOptions ropts;
  ropts.threads = o.threads;
  ropts.tokens = o.tokens;
  // Tensor by tensor (README "Memory"): every writer takes a lazy set, and every format but an
  // npz's deflated members is read lazily.
  ropts.stream = true;

  Result<KvSet> set = Status(StatusCode::kInternal, "unread");
  if (IsLlamaFormat(sum.from) && (o.head_dim_k || o.head_dim_v)) {
    const LlamaReadOptions lo{o.head_dim_k, o.head_dim_v ? o.head_dim_v : o.head_dim_k};
    set = adapters::ReadLlamaLazy(in, sum.from, lo);
    if (set.ok() && ropts.tokens) {
      Status st = SliceTokens(&*set, ropts.tokens->first, ropts.tokens->second);
      if (!st.ok()) set = st.WithFile(in);
    }
  } else {
    set = ReadKvSet(in, sum.from, ropts);
  }
  if (!set.ok()) return Status(set.status()).WithFile(in);
  if (!o.rope_type.empty()) {
    if (o.rope_type != "norm" && o.rope_type != "neox")
      return InvalidArgument("--rope-type " + o.rope_type + ": expected norm or neox");
    std::string& have = set->model.rope_type;
    if (have != "unknown" && !have.empty() && have != o.rope_type)
      return InvalidArgument("--rope-type " + o.rope_type + " disagrees with the input's recorded RoPE type " + have).WithFile(in);
    have = o.rope_type;
  }
  if (o.rope_base != 0) {
    if (!(o.rope_base > 0) || !std::isfinite(o.rope_base)) return InvalidArgument("--rope-base " + std::to_string(o.rope_base) + ": expected a positive number");
    float& have = set->model.rope_base;
    if (have != 0 && have != o.rope_base)
      return InvalidArgument("--rope-base " + std::to_string(o.rope_base) + " disagrees with the input's recorded RoPE base " + std::to_string(have)).WithFile(in);
    have = o.rope_base;
  }

  WriteOptions wopts;
  wopts.dtype = o.dtype;
  wopts.threads = o.threads;
  wopts.k_codec = kspec ? *kspec : LosslessCodec(*set, Kind::kK);
  wopts.v_codec = vspec ? *vspec : LosslessCodec(*set, Kind::kV);
  wopts.writer.zstd_level = o.zstd;
  wopts.writer.max_block_tokens = o.max_block_tokens;
  wopts.writer.fsync = o.fsync;
  wopts.target_bits = o.target_bits;
  wopts.rate_levels = o.rate_levels;
  wopts.rate_distortion = o.rate_distortion;
  wopts.rate_queries = o.rate_queries;
  if (o.target_bits) MQKV_RETURN_IF_ERROR(adapters::CheckRateCodecs(wopts));
  wopts.llama_type_k = o.llama_type_k;
  wopts.llama_type_v = o.llama_type_v;
  MQKV_RETURN_IF_ERROR(WriteKvSet(*set, out, sum.to, wopts));

  sum.tensors = set->tensors.size();
  for (const KvTensor& t : set->tensors)
    if (t.desc.kind != Kind::kQ) sum.layers = std::max(sum.layers, t.desc.layer + 1), sum.tokens = t.desc.n_tokens;
  if (to_mqkv) sum.k_codec = wopts.k_codec.ToString(), sum.v_codec = wopts.v_codec.ToString();
  if (to_mqkv && o.target_bits) {  // the level counts differ per tensor (each tensor's codec in the file)
    sum.k_codec = "rate-controlled " + sum.k_codec;
    sum.v_codec = "rate-controlled " + sum.v_codec;
  }
  return sum;
}

}  // namespace mqkv
