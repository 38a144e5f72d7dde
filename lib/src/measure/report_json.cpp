// `mqverify --json` (spec/MEASURE.md, "JSON report"): one home for the report's JSON form, so the
// tool and the Python binding (mqkv.verify) print the same structure.
#include <sstream>

#include "adapters/json.h"
#include "mqkv/measure.h"

namespace mqkv {
namespace {

std::string JsonString(std::string_view s) { return json::Quote(s); }
std::string JsonNumber(double v) { return json::Number(v); }

std::string BreakdownJson(const Breakdown& d, bool total) {
  std::ostringstream o;
  o << "{\"codes\":" << d.codes << ",\"group_meta\":" << d.group_meta << ",\"shared_ranges\":" << d.shared_ranges
    << ",\"fp16_rows\":" << d.fp16_rows << ",\"codebook\":" << d.codebook << ",\"block_headers\":" << d.block_headers
    << ",\"padding\":" << d.padding << ",\"entropy_coding\":" << d.entropy_coding;
  if (total) o << ",\"footer_index\":" << d.footer_index;
  o << "}";
  return o.str();
}

std::string AccountingJson(const TensorAccounting& a, bool total) {
  std::ostringstream o;
  o << "\"values\":" << a.values << ",\"blocks\":" << a.n_blocks << ",\"stored_bytes\":" << a.stored_bytes
    << ",\"modeled_bits\":" << JsonNumber(a.modeled_bits) << ",\"modeled_bits_per_dim\":" << JsonNumber(a.modeled_bits_per_dim())
    << ",\"actual_bits_per_dim\":" << JsonNumber(a.actual_bits_per_dim())
    << ",\"excess_bits_per_dim\":" << JsonNumber(a.excess_bits_per_dim()) << ",\"excess_percent\":" << JsonNumber(a.excess_percent())
    << ",\"overhead_bits_per_dim\":" << JsonNumber(a.values ? 8.0 * double(a.breakdown.Overhead()) / double(a.values) : 0.0)
    << ",\"content_minus_modeled_bits\":" << JsonNumber(a.content_minus_modeled_bits())
    << ",\"tail_allowance_bits\":" << a.tail_allowance_bits << ",\"excess_explained\":" << (a.explained() ? "true" : "false") << ",\"breakdown\":" << BreakdownJson(a.breakdown, total);
  return o.str();
}

std::string TensorFidelityJson(const TensorFidelity& f) {
  return "{\"rel_mse\":" + JsonNumber(f.rel_mse()) + ",\"mean_cosine\":" + JsonNumber(f.mean_cosine()) +
         ",\"min_cosine\":" + JsonNumber(f.vectors ? f.cos_min : 1.0) + ",\"vectors\":" + std::to_string(f.vectors) + "}";
}

std::string AttentionJson(const AttentionFidelity& a) {
  return "\"cases\":" + std::to_string(a.cases) + ",\"mean_output_cosine\":" + JsonNumber(a.mean_output_cosine()) +
         ",\"min_output_cosine\":" + JsonNumber(a.cases ? a.out_cos_min : 1.0) +
         ",\"mean_score_cosine\":" + JsonNumber(a.mean_score_cosine()) +
         ",\"min_score_cosine\":" + JsonNumber(a.cases ? a.score_cos_min : 1.0);
}

const TensorFidelity* FindFidelity(const Fidelity* f, uint32_t layer, Kind k) {
  if (!f) return nullptr;
  for (const TensorFidelity& t : f->tensors)
    if (t.layer == layer && t.kind == k) return &t;
  return nullptr;
}

}  // namespace

std::string VerifyReportJson(const VerifyReport& R, const std::string& path, const VerifyOptions& opts,
                             const std::string& ref_fmt_name) {
  const std::string& ref_path = opts.reference_name;
  const std::vector<double>* positions = &opts.fidelity.positions;
  const std::vector<std::string>& checksum_errors = R.checksum_errors;
  const bool checksums_ok = R.checksums_ok(), accounting_ok = R.accounting_ok(), backends_ok = R.backends_ok();
  const std::vector<BackendReport>* reps = &R.backends;
  const Fidelity* F = R.fidelity ? &*R.fidelity : nullptr;
  const std::string& fid_error = R.fidelity_error;
  const SnapshotAccounting& A = R.accounting;
  std::ostringstream o;
  o << "{\"file\":" << JsonString(path) << ",\"file_bytes\":" << A.file_bytes << ",\"checksums_ok\":" << (checksums_ok ? "true" : "false")
    << ",\"checksum_errors\":[";
  for (size_t i = 0; i < checksum_errors.size(); ++i) o << (i ? "," : "") << JsonString(checksum_errors[i]);
  o << "],\"accounting_ok\":" << (accounting_ok ? "true" : "false") << ",\"backends_ok\":" << (backends_ok ? "true" : "false")
    << ",\"tensors\":[";
  for (size_t i = 0; i < A.tensors.size(); ++i) {
    const TensorAccounting& t = A.tensors[i];
    o << (i ? "," : "") << "{\"layer\":" << t.layer << ",\"kind\":\"" << KindName(t.kind) << "\",\"codec\":" << JsonString(t.codec)
      << ",\"in_total\":" << (t.kind == Kind::kQ ? "false" : "true") << "," << AccountingJson(t, false);
    if (const TensorFidelity* tf = FindFidelity(F, t.layer, t.kind)) o << ",\"fidelity\":" << TensorFidelityJson(*tf);
    o << "}";
  }
  o << "],\"total\":{\"scope\":\"k and v tensors plus file header, footer and tail; query tensors excluded\","
    << AccountingJson(A.total, true);
  if (F) o << ",\"fidelity\":" << TensorFidelityJson(F->total);
  o << "},\"queries_in_file\":{\"tensors\":" << A.query_tensors << ",\"values\":" << A.query_values << ",\"stored_bytes\":" << A.query_bytes
    << ",\"excluded_from_total\":true},\"fidelity\":";
  if (F) {
    o << "{\"reference\":" << JsonString(ref_path) << ",\"reference_format\":" << JsonString(ref_fmt_name)
      << ",\"queries\":" << JsonString(F->queries) << ",\"position_fractions\":[";
    for (size_t i = 0; i < positions->size(); ++i) o << (i ? "," : "") << JsonNumber((*positions)[i]);
    o << "],\"score_metric\":\"cosine of softmax attention weights over j <= p\",\"attention\":{" << AttentionJson(F->attention)
      << "},\"layers\":[";
    for (size_t i = 0; i < F->layers.size(); ++i) {
      const LayerAttention& la = F->layers[i];
      o << (i ? "," : "") << "{\"layer\":" << la.layer << ",\"positions\":[";
      for (size_t j = 0; j < la.positions.size(); ++j) o << (j ? "," : "") << la.positions[j];
      o << "]," << AttentionJson(la.attention) << "}";
    }
    o << "]}";
  } else if (!fid_error.empty()) {
    o << "{\"reference\":" << JsonString(ref_path) << ",\"error\":" << JsonString(fid_error) << "}";
  } else {
    o << "null";
  }
  o << ",\"compare\":\"" << CompareRowsName(opts.compare) << "\",\"backends\":[";
  for (size_t i = 0; i < reps->size(); ++i) {
    const BackendReport& r = (*reps)[i];
    o << (i ? "," : "") << "{\"backend\":\"" << BackendName(r.backend) << "\",\"available\":" << (r.available ? "true" : "false")
      << ",\"reference\":" << (r.backend == Backend::kScalar ? "true" : "false");
    if (r.available)
      o << ",\"blocks\":" << r.blocks << ",\"rows_compared\":" << r.rows_compared << ",\"rows_decoded\":" << r.rows_decoded
        << ",\"mismatched_blocks\":" << r.mismatched << ",\"agrees\":" << (r.agrees() ? "true" : "false")
        << ",\"no_path_blocks\":" << r.no_path << ",\"no_path\":" << (r.no_path_what.empty() ? "null" : JsonString(r.no_path_what))
        << ",\"problem\":" << (r.first_problem.empty() ? "null" : JsonString(r.first_problem));
    o << "}";
  }
  o << "]}\n";
  return o.str();
}

}  // namespace mqkv
