// mqverify: checksums, honest accounting (actual bytes vs modeled bits), fidelity against a
// reference, and bit-for-bit agreement of every decode backend (spec/MEASURE.md).
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>

#include "mqkv/measure.h"
#include "tool.h"

using namespace mqkv;
using tool::Printable;

namespace {

constexpr const char* kProg = "mqverify";

const TensorFidelity* FindFidelity(const Fidelity* f, uint32_t layer, Kind k) {
  if (!f) return nullptr;
  for (const TensorFidelity& t : f->tensors)
    if (t.layer == layer && t.kind == k) return &t;
  return nullptr;
}

Result<std::vector<double>> ParsePositions(const std::string& text) {
  std::vector<double> v;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double f = std::strtod(item.c_str(), &end);
    if (item.empty() || end != item.c_str() + item.size() || !(f > 0.0 && f <= 1.0))
      return InvalidArgument("--positions: \"" + item + "\" is not a fraction in (0, 1]");
    v.push_back(f);
  }
  if (v.empty()) return InvalidArgument("--positions: no positions given");
  return v;
}

std::string Fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// What both printers read: the report and how it was asked for.
struct Printed {
  const std::string& path;
  const std::string& ref_path;
  const std::string& ref_fmt_name;
  const std::vector<double>& positions;
  const VerifyReport& R;
  uint64_t rows = 0;  // rows of every block together
};

// "all 4096 rows" or "512 of 4096 rows".
std::string Rows(uint64_t n, uint64_t of) {
  return (n == of ? "all " + std::to_string(n) : std::to_string(n) + " of " + std::to_string(of)) + " rows";
}

// The text report.
std::string ReportText(const Printed& p, size_t n_blocks) {
  const VerifyReport& R = p.R;
  const std::string& path = p.path;
  const std::string& ref_path = p.ref_path;
  const std::string& ref_fmt_name = p.ref_fmt_name;
  const std::vector<std::string>& checksum_errors = R.checksum_errors;
  const bool checksums_ok = R.checksums_ok(), accounting_ok = R.accounting_ok();
  const std::vector<BackendReport>* reps = &R.backends;
  const Fidelity* F = R.fidelity ? &*R.fidelity : nullptr;
  const std::string& fid_error = R.fidelity_error;
  const SnapshotAccounting& A = R.accounting;
  std::ostringstream o;
  o << "file        " << Printable(path) << " (" << A.file_bytes << " bytes)\n";
  o << "checksums   " << (checksums_ok ? "ok (footer and " + std::to_string(n_blocks) + " blocks)" : "MISMATCH in " + std::to_string(checksum_errors.size()) + " block(s)") << "\n";
  for (size_t i = 0; i < checksum_errors.size() && i < 5; ++i) o << "            " << Printable(checksum_errors[i]) << "\n";
  char line[512];
  std::snprintf(line, sizeof line, "  %5s %-4s %12s %12s %9s %9s %8s  %-9s %s\n", "layer", "kind", "values", "stored", "modeled", "actual",
                "excess%", F ? "rel_mse" : "", F ? "cos" : "");
  o << "accounting  bits per value (modeled = codec formula, actual = 8 x stored bytes / values)\n" << line;
  for (const TensorAccounting& t : A.tensors) {
    const TensorFidelity* tf = FindFidelity(F, t.layer, t.kind);
    std::snprintf(line, sizeof line, "  %5u %-4s %12llu %12llu %9.5f %9.5f %8.3f  %-9s %s%s  %s\n", t.layer, KindName(t.kind),
                  (unsigned long long)t.values, (unsigned long long)t.stored_bytes, t.modeled_bits_per_dim(), t.actual_bits_per_dim(),
                  t.excess_percent(), tf ? Fmt("%.3e", tf->rel_mse()).c_str() : "", tf ? Fmt("%.6f", tf->mean_cosine()).c_str() : "",
                  t.kind == Kind::kQ ? " (reference queries, not in total)" : "", Printable(t.codec).c_str());
    o << line;
  }
  const TensorAccounting& T = A.total;
  std::snprintf(line, sizeof line, "  %-10s %12llu %12llu %9.5f %9.5f %8.3f  %-9s %s\n", "total k+v", (unsigned long long)T.values,
                (unsigned long long)T.stored_bytes, T.modeled_bits_per_dim(), T.actual_bits_per_dim(), T.excess_percent(),
                F ? Fmt("%.3e", F->total.rel_mse()).c_str() : "", F ? Fmt("%.6f", F->total.mean_cosine()).c_str() : "");
  o << line;
  const Breakdown& d = T.breakdown;
  o << "breakdown   codes " << d.codes << ", group meta " << d.group_meta << ", shared ranges " << d.shared_ranges << ", fp16 rows "
    << d.fp16_rows << ", codebook " << d.codebook << ", block headers " << d.block_headers << ", padding " << d.padding
    << ", entropy coding " << d.entropy_coding << ", footer+index " << d.footer_index << " = " << d.Sum() << " bytes";
  if (A.query_tensors) o << " (+ " << A.query_bytes << " bytes of " << A.query_tensors << " query tensors = " << A.file_bytes << ")";
  o << "\n";
  o << "excess      " << Fmt("%.5f", T.excess_bits_per_dim()) << " bits/value over modeled; overheads account for "
    << Fmt("%.5f", T.values ? 8.0 * double(d.Overhead()) / double(T.values) : 0.0) << ": "
    << (accounting_ok ? "explained" : "NOT EXPLAINED by headers, index, padding and codebook") << "\n";
  if (F) {
    const AttentionFidelity& at = F->attention;
    o << "fidelity    vs " << Printable(ref_path) << " (" << ref_fmt_name << "), queries: " << F->queries << "\n"
      << "attention   " << at.cases << " cases: output cosine mean " << Fmt("%.6f", at.mean_output_cosine()) << " min "
      << Fmt("%.6f", at.cases ? at.out_cos_min : 1.0) << "; score cosine mean " << Fmt("%.6f", at.mean_score_cosine()) << " min "
      << Fmt("%.6f", at.cases ? at.score_cos_min : 1.0) << "\n";
  } else if (!fid_error.empty()) {
    o << "fidelity    " << fid_error << "\n";
  }
  for (const BackendReport& r : *reps) {
    o << "backend     " << BackendName(r.backend) << ": ";
    if (!r.available) o << "not available";
    else if (r.backend == Backend::kScalar)
      o << (r.agrees() ? "reference, decoded " + std::to_string(r.blocks) + " blocks (" + Rows(r.rows_decoded, p.rows) + ")" : "DECODE FAILED: " + Printable(r.first_problem));
    else {
      o << (r.agrees() ? "bit-identical to scalar on " + std::to_string(r.blocks) + " blocks (f32 and f16; " + Rows(r.rows_compared, p.rows) + " compared, " + Rows(r.rows_decoded, p.rows) + " decoded)"
                       : "DISAGREES on " + std::to_string(r.mismatched) + " block(s): " + Printable(r.first_problem));
      if (r.no_path)
        o << "; " << r.no_path << " block(s) have no " << BackendName(r.backend) << " path (" << Printable(r.no_path_what) << ")";
    }
    o << "\n";
  }
  return o.str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Verify an mqkv snapshot: checksums, actual bytes vs modeled bits, fidelity against a reference, "
               "and bit-for-bit agreement of every decode backend (spec/MEASURE.md).",
               kProg};
  std::string path, ref_path, ref_format, positions_text = "0.25,0.5,0.75,1", backend_text = "all", compare_text = "sample";
  bool json = false;
  app.add_option("FILE", path, "mqkv file, or an s3:// / http(s):// URL")->required();
  app.add_option("--reference", ref_path, "reference K/V (any format mqconvert reads) for fidelity");
  app.add_option("--from", ref_format, "format of the reference (mqkv, safetensors, npy, npz, llama-session, ...); default: detect");
  app.add_flag("--json", json, "print one JSON object instead of text");
  app.add_option("--positions", positions_text, "query positions as fractions of the prefix (p = round(f*n) - 1)")->capture_default_str();
  app.add_option("--backend", backend_text, "decoders to compare with scalar: all, scalar, simd or cuda")->capture_default_str();
  app.add_option("--compare", compare_text,
                 "rows compared bit for bit with scalar: sample (each block's first and last 64; every row still decoded) or all")
      ->capture_default_str();
  unsigned threads = 0;
  app.add_option("--threads", threads, "threads for checksums, backend comparison and decoding (0: all cores); the report is the same for every count")
      ->capture_default_str();
  return tool::Run(app, argc, argv, [&]() -> int {
    auto positions = ParsePositions(positions_text);
    if (!positions.ok()) return tool::Fail(kProg, positions.status());
    auto backends = ParseBackendList(backend_text);
    if (!backends.ok()) return tool::Fail(kProg, backends.status());
    auto compare = ParseCompareRows(compare_text);
    if (!compare.ok()) return tool::Fail(kProg, compare.status());
    if (!ref_format.empty() && ref_path.empty()) return tool::Fail(kProg, InvalidArgument("--from needs --reference"));

    auto opened = Snapshot::Open(path);
    if (!opened.ok()) return tool::Fail(kProg, opened.status());
    const Snapshot& s = **opened;

    // The reference (read first: a bad reference is a usage problem, whatever the file holds).
    std::optional<KvSet> reference;
    std::string ref_fmt_name;
    if (!ref_path.empty()) {
      auto fmt = ref_format.empty() ? DetectFileFormat(ref_path) : ParseFileFormat(ref_format);
      if (!fmt.ok()) return tool::Fail(kProg, fmt.status());
      ref_fmt_name = FileFormatName(*fmt);
      ReadOptions ro;
      ro.threads = threads;
      auto ref = ReadKvSet(ref_path, *fmt, ro);
      if (!ref.ok()) return tool::Fail(kProg, ref.status());
      reference = std::move(*ref);
    }
    VerifyOptions vo;
    vo.backends = *backends;
    vo.compare = *compare;
    vo.reference = reference ? &*reference : nullptr;
    vo.reference_name = ref_path;
    vo.fidelity.positions = *positions;
    vo.threads = threads;
    auto report = VerifySnapshot(s, vo);
    if (!report.ok()) return tool::Fail(kProg, report.status());
    const VerifyReport& R = *report;
    uint64_t rows = 0;
    for (size_t b = 0; b < s.blocks().size(); ++b) rows += s.BlockHeaderAt(b).value()->n_tokens;
    const Printed printed{path, ref_path, ref_fmt_name, *positions, R, rows};
    std::cout << (json ? VerifyReportJson(R, path, vo, ref_fmt_name) : ReportText(printed, s.blocks().size())) << std::flush;
    // Exit policy: any checksum mismatch, backend disagreement or unexplained excess is exit 4.
    if (!R.checksums_ok()) std::fprintf(stderr, "%s: %s\n", kProg, Printable(R.checksum_errors[0]).c_str());
    if (!R.backends_ok()) std::fprintf(stderr, "%s: decode backends disagree\n", kProg);
    if (!R.accounting_ok()) std::fprintf(stderr, "%s: actual size exceeds modeled bits by more than the listed overheads\n", kProg);
    return R.ok() ? tool::kExitOk : tool::kExitVerify;
  });
}
