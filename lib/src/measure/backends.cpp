// Backend agreement (spec/MEASURE.md, "Backend agreement"): every block that passes its
// checksum is decoded by the scalar reference and by each other available backend, to f32 and
// to f16, and the output bytes are compared: all rows, or (CompareRows::kSample) each block's
// first and last rows while the other rows are only decoded. Rows are decoded in chunks to bound memory.
#include <algorithm>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "mqkv/measure.h"
#include "codec/registry.h"
#include "util/parallel.h"

namespace mqkv {

namespace {
constexpr uint64_t kChunkValues = uint64_t(1) << 22;        // 16 MiB of f32 per buffer
constexpr uint64_t kDecodeChunkValues = uint64_t(1) << 18;  // 512 KiB of f16: decode-only rows stay in cache

std::string Where(const BlockHeader& h, size_t b, uint32_t r0, DType dt) {
  return "block " + std::to_string(b) + " (layer " + std::to_string(h.layer) + " " +
         KindName(static_cast<Kind>(h.kind)) + ", rows " + std::to_string(r0) + "+, " + DTypeName(dt) + ")";
}
// A short name of a block's layout, for "no SIMD path" lines: "f32 raw", "affine b3 g64 meta4 hadamard".
std::string CodecLayoutName(const BlockHeader& h) {
  const Codec* c = GetCodec(h.codec);
  std::string n = c ? c->name() : "codec " + std::to_string(h.codec);
  if (h.codec <= static_cast<uint8_t>(CodecId::kBF16)) return n + " raw";
  if (h.codec != static_cast<uint8_t>(CodecId::kAffine) && h.codec != static_cast<uint8_t>(CodecId::kCodebook)) return n;
  n += " b" + std::to_string(h.bits);
  if (h.group_axis == static_cast<uint8_t>(GroupAxis::kChannel)) n += " channel";
  else n += " g" + std::to_string(h.group_size);
  if (h.meta_bits != 16) n += " meta" + std::to_string(h.meta_bits);
  if (h.rotation == static_cast<uint8_t>(Rotation::kHadamard)) n += " hadamard";
  return n;
}
}  // namespace

const char* CompareRowsName(CompareRows c) { return c == CompareRows::kAll ? "all" : "sample"; }

Result<CompareRows> ParseCompareRows(std::string_view text) {
  if (text == "sample") return CompareRows::kSample;
  if (text == "all") return CompareRows::kAll;
  return InvalidArgument("--compare \"" + std::string(text) + "\": expected sample or all");
}

Result<std::vector<BackendReport>> CompareBackends(const Snapshot& s, const std::vector<Backend>& wanted, unsigned threads,
                                                   CompareRows rows) {
  std::vector<BackendReport> reports;
  auto add = [&](Backend b) {
    for (const BackendReport& r : reports)
      if (r.backend == b) return;
    BackendReport r;
    r.backend = b;
    r.available = BackendAvailable(b);
    reports.push_back(r);
  };
  add(Backend::kScalar);
  for (Backend b : wanted) {
    if (b == Backend::kAuto) return InvalidArgument("backend \"auto\" is not a decoder to compare; name scalar, simd or cuda");
    add(b);
  }
  // Each block is compared on its own (in parallel on `threads` threads; a CUDA decode holds a
  // lock, the device is used from one thread at a time), then the outcomes are merged in block
  // order, so the report is the same for every thread count.
  struct Outcome {
    std::vector<uint8_t> bad;                 // per backend: some f32/f16 output differed or failed
    std::vector<std::string> first_problem;   // per backend: this block's first problem
    std::vector<uint8_t> unserved;            // per backend: bit (1 << DType) not served
    uint64_t rows_compared = 0;               // rows compared (every backend, f32 and f16)
    std::vector<uint64_t> decoded_only;       // per backend: rows decoded but not compared (kSample)
    bool compared = false;                    // false: failed its checksum (the verify pass reports it)
  };
  std::vector<Outcome> outcomes(s.blocks().size());
  std::mutex device;
  unsigned workers = threads ? threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::vector<uint8_t>> refs(workers), gots(workers);
  MQKV_RETURN_IF_ERROR(util::ParallelFor(s.blocks().size(), workers, [&](size_t b, unsigned w) -> Status {
    if (!s.VerifyBlock(b).ok()) return Status::OK();
    MQKV_ASSIGN_OR_RETURN(BlockData data, s.ReadBlock(b));
    Outcome& out = outcomes[b];
    out.compared = true;
    out.bad.assign(reports.size(), 0);
    out.first_problem.assign(reports.size(), "");
    out.unserved.assign(reports.size(), 0);
    out.decoded_only.assign(reports.size(), 0);
    std::vector<uint8_t>& ref = refs[w];
    std::vector<uint8_t>& got = gots[w];
    const BlockHeader& h = *data.view.header;
    const Codec* codec = GetCodec(h.codec);
    const uint64_t row = uint64_t(h.n_heads) * h.head_dim;
    const uint32_t step = static_cast<uint32_t>(std::max<uint64_t>(1, kChunkValues / std::max<uint64_t>(row, 1)));
    auto note = [&](size_t i, const std::string& where, const std::string& problem) {
      out.bad[i] = 1;
      if (out.first_problem[i].empty()) out.first_problem[i] = where + ": " + problem;
    };
    // Rows [r0, r1) into `got` with backend `be` (the CUDA device one thread at a time).
    auto decode = [&](Backend be, uint32_t r0, uint32_t r1, DType dt, Backend* served) {
      std::unique_lock<std::mutex> lock(device, std::defer_lock);
      if (be == Backend::kCuda) lock.lock();
      return codec->Decode(data.view, r0, r1, dt, got.data(), be, served);
    };
    // Rows [a, z) decoded by every backend to f32 and f16 and compared with the reference.
    auto compare = [&](uint32_t a, uint32_t z) {
      out.rows_compared += z - a;
      for (uint32_t r0 = a; r0 < z; r0 += std::min(step, z - r0)) {
        const uint32_t r1 = r0 + std::min(step, z - r0);
        for (DType dt : {DType::kF32, DType::kF16}) {
          const uint64_t bytes = (r1 - r0) * row * DTypeSize(dt);
          ref.assign(bytes, 0);
          Status st = codec->Decode(data.view, r0, r1, dt, ref.data(), Backend::kScalar);
          if (!st.ok()) {
            note(0, Where(h, b, r0, dt), st.ToString());
            continue;
          }
          for (size_t i = 1; i < reports.size(); ++i) {
            const BackendReport& r = reports[i];
            if (!r.available) continue;
            got.assign(bytes, 0xA5);  // not zero: a decoder that writes nothing must not pass
            Backend served = Backend::kScalar;
            const Status gs = decode(r.backend, r0, r1, dt, &served);
            if (gs.ok() && served != r.backend) {  // no kernel of this backend ran: nothing to compare
              out.unserved[i] |= uint8_t(1u << static_cast<int>(dt));
              continue;
            }
            if (!gs.ok()) {
              note(i, Where(h, b, r0, dt), gs.ToString());
            } else if (std::memcmp(ref.data(), got.data(), bytes) != 0) {
              uint64_t at = 0;
              while (ref[at] == got[at]) ++at;
              note(i, Where(h, b, r0, dt), "differs from scalar first at output byte " + std::to_string(at));
            }
          }
        }
      }
    };
    if (rows == CompareRows::kAll || h.n_tokens <= 2 * kCompareSampleRows) {
      compare(0, h.n_tokens);
    } else {
      compare(0, kCompareSampleRows);
      compare(h.n_tokens - kCompareSampleRows, h.n_tokens);
      // Every row still decodes: with each compared backend (the reference when none is), to f16,
      // in chunks that stay in the core's cache.
      bool any = false;
      for (size_t i = 1; i < reports.size(); ++i) any = any || reports[i].available;
      for (size_t i = any ? 1 : 0; i < reports.size(); ++i) {
        if (!reports[i].available) continue;
        const Backend be = reports[i].backend;
        // Device decodes in the comparison's larger chunks (fewer transfers under the lock).
        const uint64_t chunk = be == Backend::kCuda ? kChunkValues : kDecodeChunkValues;
        const uint32_t fstep = static_cast<uint32_t>(std::max<uint64_t>(1, chunk / std::max<uint64_t>(row, 1)));
        uint64_t decoded = 0;
        for (uint32_t r0 = 0; r0 < h.n_tokens; r0 += std::min(fstep, h.n_tokens - r0)) {
          const uint32_t r1 = r0 + std::min(fstep, h.n_tokens - r0);
          got.resize((r1 - r0) * row * DTypeSize(DType::kF16));
          Backend served = Backend::kScalar;
          const Status gs = decode(be, r0, r1, DType::kF16, &served);
          if (!gs.ok()) {
            note(i, Where(h, b, r0, DType::kF16), gs.ToString());
            break;
          }
          if (served == be) decoded += r1 - r0;
        }
        // Rows decoded beyond the compared ones (those are counted with the comparison).
        const uint64_t compared_in_range = 2 * uint64_t(kCompareSampleRows);
        out.decoded_only[i] = decoded > compared_in_range ? decoded - compared_in_range : 0;
      }
    }
    s.ReleaseBlocks(b, b + 1);
    return Status::OK();
  }));

  std::vector<std::set<std::string>> noted(reports.size());  // no-path layouts already named
  for (size_t b = 0; b < s.blocks().size(); ++b) {
    const Outcome& out = outcomes[b];
    if (!out.compared) continue;
    const BlockHeader& h = *s.BlockHeaderAt(b).value();
    for (size_t i = 0; i < reports.size(); ++i) {
      BackendReport& r = reports[i];
      if (out.bad[i]) ++r.mismatched;
      if (r.first_problem.empty()) r.first_problem = out.first_problem[i];
      if (!r.available) continue;
      if (!out.unserved[i]) {
        ++r.blocks;
        r.rows_compared += out.rows_compared;
        r.rows_decoded += out.rows_compared + out.decoded_only[i];
        continue;
      }
      ++r.no_path;
      std::string what = CodecLayoutName(h) + " ->";
      for (DType dt : {DType::kF32, DType::kF16})
        if (out.unserved[i] & (1u << static_cast<int>(dt))) what += std::string(what.back() == '>' ? " " : ", ") + DTypeName(dt);
      if (noted[i].insert(what).second && r.no_path_what.size() < 400)
        r.no_path_what += (r.no_path_what.empty() ? "" : "; ") + what;
    }
  }
  return reports;
}

}  // namespace mqkv
