// mqinfo: summarize an mqkv file (model, tensors, codecs, bytes per part, checksum status).
#include <cstdio>
#include <iostream>
#include <sstream>

#include "mqkv/measure.h"
#include "tool.h"

using namespace mqkv;
using tool::JsonNumber;
using tool::JsonString;
using tool::Printable;

namespace {

constexpr const char* kPartNames[kNumParts] = {"codes", "scales", "mins", "ranges", "sink_rows", "residual_rows", "codebook"};

struct TensorSummary {
  uint64_t stored = 0, payload = 0;
  uint64_t parts[kNumParts] = {};
  int compressed = 0;
  bool checksums_ok = true;
};

std::string Human(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", b / 1048576.0);
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  else std::snprintf(buf, sizeof buf, "%llu B", (unsigned long long)b);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Summarize an mqkv KV-cache snapshot: model, tensors, codecs, bytes per part, checksums.", "mqinfo"};
  std::string path;
  bool json = false, no_verify = false, verify = false, stats = false;
  app.add_option("FILE", path, "mqkv file, or an s3:// / http(s):// URL")->required();
  app.add_flag("--json", json, "print one JSON object instead of text");
  app.add_flag("--no-verify", no_verify, "skip block checksums (reads only header, footer and block headers)");
  app.add_flag("--verify", verify, "check block checksums of a URL too (fetches the whole object; local files always are)");
  app.add_flag("--stats", stats, "print the requests made and bytes fetched (remote objects) on stderr");
  return tool::Run(app, argc, argv, [&]() -> int {
    // A URL's blocks are not fetched just to list them: its checksums are checked on --verify.
    if (IsUrl(path) && !verify) no_verify = true;
    auto opened = Snapshot::Open(path);
    if (!opened.ok()) return tool::Fail("mqinfo", opened.status());
    const Snapshot& s = **opened;
    // Bytes per tensor and part: the same accounting mqverify prints (it also checks every block
    // header: a bad one makes the file malformed, exit 3, one line).
    auto acc = AccountSnapshot(s);
    if (!acc.ok()) return tool::Fail("mqinfo", acc.status());
    std::vector<TensorSummary> sum(s.tensors().size());
    for (size_t i = 0; i < sum.size(); ++i) {
      const TensorAccounting& ta = acc->tensors[i];
      sum[i].stored = ta.block_bytes;
      sum[i].payload = ta.payload_bytes;
      for (int p = 0; p < kNumParts; ++p) sum[i].parts[p] = ta.part_bytes[p];
      sum[i].compressed = int(ta.compressed_blocks);
    }
    bool all_ok = true;
    std::string first_error;
    for (size_t b = 0; b < s.blocks().size() && !no_verify; ++b) {
      if (Status st = s.VerifyBlock(b); !st.ok()) {
        sum[s.blocks()[b].tensor].checksums_ok = all_ok = false;
        if (first_error.empty()) first_error = st.ToString();
      }
      s.ReleaseBlocks(b, b + 1);  // a file larger than memory is checked without filling the resident set
    }
    const ModelInfo& m = s.model();
    std::ostringstream o;
    if (json) {
      o << "{\"file\":" << JsonString(path) << ",\"format_version\":" << JsonString(std::to_string(s.version_major()) + "." + std::to_string(s.version_minor()))
        << ",\"required_features\":" << JsonString(FeatureNames(s.required_features())) << ",\"file_bytes\":" << s.file_bytes()
        << ",\"footer_bytes\":" << s.footer_bytes() << ",\"model\":{\"architecture\":" << JsonString(m.architecture)
        << ",\"n_layer\":" << m.n_layer << ",\"n_head\":" << m.n_head << ",\"n_head_kv\":" << m.n_head_kv
        << ",\"head_dim_k\":" << m.head_dim_k << ",\"head_dim_v\":" << m.head_dim_v << ",\"rope_type\":" << JsonString(m.rope_type)
        << ",\"rope_base\":" << JsonNumber(m.rope_base) << ",\"k_rope\":" << JsonString(KRopeName(m.k_rope))
        << ",\"source_engine\":" << JsonString(m.source_engine) << ",\"source_engine_version\":" << JsonString(m.source_engine_version)
        << ",\"source_format\":" << JsonString(m.source_format) << ",\"n_tokens\":" << m.tokens.size() << ",\"metadata\":{";
      for (size_t i = 0; i < m.metadata.size(); ++i) o << (i ? "," : "") << JsonString(m.metadata[i].first) << ":" << JsonString(m.metadata[i].second);
      o << "}},\"tensors\":[";
      for (size_t i = 0; i < s.tensors().size(); ++i) {
        const TensorInfo& t = s.tensors()[i];
        o << (i ? "," : "") << "{\"layer\":" << t.layer << ",\"kind\":\"" << KindName(t.kind) << "\",\"codec\":" << JsonString(t.codec)
          << ",\"shape\":[" << t.n_tokens << "," << t.n_heads << "," << t.head_dim << "],\"source_dtype\":" << JsonString(t.source_dtype)
          << ",\"blocks\":" << t.n_blocks << ",\"compressed_blocks\":" << sum[i].compressed << ",\"stored_bytes\":" << sum[i].stored
          << ",\"payload_bytes\":" << sum[i].payload << ",\"parts\":{";
        for (int p = 0; p < kNumParts; ++p) o << (p ? "," : "") << "\"" << kPartNames[p] << "\":" << sum[i].parts[p];
        o << "}";
        if (!no_verify) o << ",\"checksums_ok\":" << (sum[i].checksums_ok ? "true" : "false");
        o << "}";
      }
      o << "],\"checksums_ok\":" << (no_verify ? "null" : all_ok ? "true" : "false") << "}\n";
    } else {
      o << "file            " << Printable(path) << " (" << s.file_bytes() << " bytes, " << Human(s.file_bytes()) << ")\n"
        << "format          mqkv " << s.version_major() << "." << s.version_minor() << ", features " << FeatureNames(s.required_features())
        << ", footer " << s.footer_bytes() << " bytes\n"
        << "model           " << Printable(m.architecture.empty() ? "(unknown)" : m.architecture) << ": " << m.n_layer << " layers, "
        << m.n_head << " heads, " << m.n_head_kv << " KV heads, head dim K " << m.head_dim_k << " V " << m.head_dim_v << "\n"
        << "rope            " << Printable(m.rope_type) << ", base " << m.rope_base << ", K stored " << KRopeName(m.k_rope) << "-RoPE\n"
        << "source          " << Printable(m.source_engine.empty() ? "(unknown)" : m.source_engine) << " "
        << Printable(m.source_engine_version) << ", format " << Printable(m.source_format.empty() ? "(unknown)" : m.source_format) << "\n"
        << "prefix          " << m.tokens.size() << " tokens\n";
      for (const auto& [k, v] : m.metadata) o << "meta            " << Printable(k) << " = " << Printable(v) << "\n";
      o << "tensors         " << s.tensors().size() << " in " << s.blocks().size() << " blocks\n";
      char line[512];
      std::snprintf(line, sizeof line, "  %5s %-4s %-22s %8s %10s %10s %10s %10s %10s  %s\n", "layer", "kind", "shape [tok,head,dim]", "blocks", "stored",
                    "codes", "meta", "fp16 rows", "other", "codec");
      o << line;
      for (size_t i = 0; i < s.tensors().size(); ++i) {
        const TensorInfo& t = s.tensors()[i];
        const auto& p = sum[i].parts;
        std::string shape = "[" + std::to_string(t.n_tokens) + "," + std::to_string(t.n_heads) + "," + std::to_string(t.head_dim) + "]";
        std::snprintf(line, sizeof line, "  %5u %-4s %-22s %8u %10llu %10llu %10llu %10llu %10llu  %s%s%s\n", t.layer, KindName(t.kind), shape.c_str(),
                      t.n_blocks, (unsigned long long)sum[i].stored, (unsigned long long)p[kPartCodes],
                      (unsigned long long)(p[kPartScales] + p[kPartMins] + p[kPartRanges]),
                      (unsigned long long)(p[kPartSinkRows] + p[kPartResidualRows]), (unsigned long long)p[kPartCodebook],
                      Printable(t.codec).c_str(), sum[i].compressed ? " +zstd" : "", sum[i].checksums_ok ? "" : "  CHECKSUM MISMATCH");
        o << line;
        // fit=lloyd: the codec string keeps the starting levels; the blocks hold the fitted ones.
        if (t.codec.find(",fit=lloyd") != std::string::npos && t.n_blocks > 0 && sum[i].checksums_ok) {
          auto spec = s.TensorSpec(i);
          if (spec.ok()) {
            std::string lv;
            for (float x : spec->levels) {
              char b[32];
              std::snprintf(b, sizeof b, "%s%.6g", lv.empty() ? "" : "/", double(x));
              lv += b;
            }
            o << "                fitted levels " << lv << (t.n_blocks > 1 ? " (first of " + std::to_string(t.n_blocks) + " blocks)" : "") << "\n";
          }
        }
      }
      o << "checksums       " << (no_verify ? "not checked" : all_ok ? "ok (footer and every block, XXH3-64)" : "MISMATCH: " + Printable(first_error)) << "\n";
    }
    std::cout << o.str();
    if (stats) {
      const IoStats io = s.io_stats();
      std::fprintf(stderr, "mqinfo: %s: %llu requests (%llu retried), %llu bytes fetched of %llu (%.2f%%)\n", Printable(path).c_str(),
                   (unsigned long long)io.requests, (unsigned long long)io.retries, (unsigned long long)io.bytes_fetched,
                   (unsigned long long)s.file_bytes(), s.file_bytes() ? 100.0 * double(io.bytes_fetched) / double(s.file_bytes()) : 0.0);
    }
    if (!all_ok) {
      std::fprintf(stderr, "mqinfo: %s\n", Printable(first_error).c_str());
      return tool::kExitVerify;
    }
    return tool::kExitOk;
  });
}
