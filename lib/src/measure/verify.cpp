// The whole verification (spec/MEASURE.md): what mqverify prints, as a value the tools and
// bindings share. Opens nothing: everything is read from the caller's snapshot.
#include "mqkv/measure.h"
#include "mqkv/kvset.h"
#include "util/parallel.h"

namespace mqkv {

Result<std::vector<Backend>> ParseBackendList(std::string_view text) {
  std::vector<Backend> backends;
  if (text == "all") {
    for (Backend b : {Backend::kSimd, Backend::kCuda})
      if (BackendAvailable(b)) backends.push_back(b);
    return backends;
  }
  auto b = ParseBackend(text);
  if (!b.ok() || *b == Backend::kAuto)
    return InvalidArgument("--backend \"" + std::string(text) + "\": expected all, scalar, simd or cuda");
  if (!BackendAvailable(*b)) return InvalidArgument(std::string("--backend ") + BackendName(*b) + ": not available in this build or on this machine");
  backends.push_back(*b);
  return backends;
}

bool VerifyReport::accounting_ok() const {
  bool ok = accounting.total.explained();
  for (const TensorAccounting& t : accounting.tensors) ok = ok && (t.kind == Kind::kQ || t.explained());
  return ok;
}

bool VerifyReport::backends_ok() const {
  for (const BackendReport& r : backends)
    if (r.available && !r.agrees()) return false;
  return true;
}


Result<VerifyReport> VerifySnapshot(const Snapshot& s, const VerifyOptions& opts) {
  VerifyReport r;
  // 0. Every block header (checked on first access, not at open).
  for (size_t b = 0; b < s.blocks().size(); ++b) MQKV_RETURN_IF_ERROR(s.BlockHeaderAt(b).status());
  // 1. Checksums of every block (the footer's was checked at open), in parallel, listed in block order.
  std::vector<Status> sums(s.blocks().size());
  MQKV_RETURN_IF_ERROR(util::ParallelFor(sums.size(), opts.threads, [&](size_t b, unsigned) {
    sums[b] = s.VerifyBlock(b);
    s.ReleaseBlocks(b, b + 1);  // one pass over a file larger than memory: its pages do not pile up
    return Status::OK();
  }));
  for (const Status& st : sums)
    if (!st.ok()) r.checksum_errors.push_back(st.ToString());
  // 2. Accounting.
  MQKV_ASSIGN_OR_RETURN(r.accounting, AccountSnapshot(s));
  // 3. Backends.
  MQKV_ASSIGN_OR_RETURN(r.backends, CompareBackends(s, opts.backends, opts.threads, opts.compare));
  // 4. Fidelity.
  if (opts.reference) {
    if (!r.checksums_ok()) {
      r.fidelity_error = "not measured: the file has checksum mismatches";
    } else {
      MQKV_ASSIGN_OR_RETURN(KvSet decoded, DecodeSnapshot(s, opts.threads));
      auto f = MeasureFidelity(decoded, *opts.reference, opts.fidelity);
      if (!f.ok()) {
        Status st = f.status();
        st.Prepend("comparing with reference " + opts.reference_name);
        return st.WithFile(s.path());
      }
      r.fidelity = std::move(*f);
    }
  }
  return r;
}

}  // namespace mqkv
