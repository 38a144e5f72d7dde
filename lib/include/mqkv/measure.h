// Measurement of a snapshot (spec/MEASURE.md): where every byte of the file goes and how that
// compares with the modeled bit count (accounting), how close the decoded K/V are to a reference
// (fidelity, including attention), and whether every available decoder agrees bit for bit with
// the scalar reference (backend agreement). mqverify is a thin printer over these functions.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mqkv/codec.h"
#include "mqkv/kvset.h"
#include "mqkv/snapshot.h"
#include "mqkv/status.h"

namespace mqkv {

// ---------------------------------------------------------------------------------------------
// Accounting

// Bytes by purpose. Every byte of a file lands in exactly one field (spec/MEASURE.md,
// "Breakdown"). `entropy_coding` is signed: stored minus decoded payload bytes of zstd blocks
// (negative when compression saved bytes); the other fields count decoded payload bytes.
struct Breakdown {
  uint64_t codes = 0;          // code streams, or raw rows of the f32/f16/bf16 codecs
  uint64_t group_meta = 0;     // per-group scales and minimums
  uint64_t shared_ranges = 0;  // shared fp16 (lo, hi) pairs of meta-coded fields
  uint64_t fp16_rows = 0;      // sink and residual rows kept as fp16
  uint64_t codebook = 0;       // stored codebook levels
  uint64_t block_headers = 0;  // 128 bytes per block
  uint64_t padding = 0;        // inside payloads (part alignment, bit-stream tails) + block alignment to 64
  int64_t entropy_coding = 0;  // zstd: stored - decoded payload bytes
  uint64_t footer_index = 0;   // total only: file header 64 + footer + tail 48 (+ unowned gaps)

  // Sum of all fields (as stored bytes).
  int64_t Sum() const;
  // Bytes that carry no modeled information: headers, index, padding, codebook, entropy coding.
  int64_t Overhead() const;
  // Bytes the modeled formula counts: codes + group_meta + shared_ranges + fp16_rows.
  uint64_t Content() const { return codes + group_meta + shared_ranges + fp16_rows; }
  Breakdown& operator+=(const Breakdown& o);
};

struct TensorAccounting {
  size_t tensor = 0;  // index in Snapshot::tensors()
  uint32_t layer = 0;
  Kind kind = Kind::kK;
  std::string codec;  // canonical spec string from the index
  uint32_t n_blocks = 0;
  uint64_t values = 0;        // n_tokens x n_heads x head_dim
  uint64_t stored_bytes = 0;  // the file bytes this tensor owns (== breakdown.Sum())
  double modeled_bits = 0;    // sum of Codec::Account(header).modeled_bits over its blocks
  Breakdown breakdown;
  // Bit streams end on a byte boundary: up to 7 unused bits at the end of each non-empty part
  // among codes, scales, mins, ranges, sink rows and residual rows, per block. Bytes cannot
  // hold half a byte, so these bits stay inside the content fields; this is their upper bound.
  uint64_t tail_allowance_bits = 0;
  // What the block headers say (mqinfo prints these): bytes per part summed over the blocks, the
  // decoded payload bytes, the blocks' index lengths (header + stored payload, no alignment), and
  // how many blocks are zstd-compressed.
  std::array<uint64_t, kNumParts> part_bytes{};
  uint64_t payload_bytes = 0, block_bytes = 0;
  uint32_t compressed_blocks = 0;

  double modeled_bits_per_dim() const { return values ? modeled_bits / double(values) : 0.0; }
  double actual_bits_per_dim() const { return values ? 8.0 * double(stored_bytes) / double(values) : 0.0; }
  double excess_bits_per_dim() const { return actual_bits_per_dim() - modeled_bits_per_dim(); }
  // 8 x Content() - modeled: bits the content fields hold beyond the model (stream tails).
  double content_minus_modeled_bits() const { return 8.0 * double(breakdown.Content()) - modeled_bits; }
  // 100 x (actual - modeled) / modeled.
  double excess_percent() const;
  // True when actual - modeled <= 8 x Overhead() + tail_allowance_bits: the excess is explained
  // by headers, index, padding, codebook and entropy coding, plus at most the sub-byte tails of
  // the bit streams (spec/MEASURE.md, "Honesty check").
  bool explained() const;
};

struct SnapshotAccounting {
  uint64_t file_bytes = 0;
  std::vector<TensorAccounting> tensors;  // every tensor, in index order (K, V and Q)
  // K and V tensors plus the file's header, footer, tail and any unowned gap. Query tensors
  // (reference data) are excluded: total.stored_bytes + query_bytes == file_bytes.
  TensorAccounting total;
  uint32_t query_tensors = 0;
  uint64_t query_values = 0, query_bytes = 0;
};

// Reads only the index and block headers (no payload bytes, no checksums).
Result<SnapshotAccounting> AccountSnapshot(const Snapshot& snapshot);

// What a tensor really costs and what comes back (the measured replacement for fake
// quantization): `rows` ([n_tokens][n_heads][head_dim] fp32) written with `spec` as a one-tensor
// snapshot in memory by the real writer, read back and decoded into dst (n_tokens x n_heads x
// head_dim elements of `out`). The accounting is that tensor's: stored_bytes is every byte it
// owns in a file (block headers, payload, alignment), not counting the file's header and index.
// `model` (optional) is the snapshot's: a `prerope=1` key spec takes its RoPE type and base and
// the rows' positions from it (spec/CODECS.md, "Keys before RoPE").
Result<TensorAccounting> Quantize(const TensorDesc& desc, const float* rows, const CodecSpec& spec, DType out, void* dst,
                                  const WriterOptions& opts = {}, const ModelInfo* model = nullptr);

// ---------------------------------------------------------------------------------------------
// Fidelity

struct FidelityOptions {
  // Query positions as fractions f in (0, 1] of the prefix length n: p = clamp(round(f n) - 1,
  // 0, n - 1) (round half up). Used when the reference carries no queries for a layer.
  std::vector<double> positions = {0.25, 0.5, 0.75, 1.0};
};

struct TensorFidelity {
  uint32_t layer = 0;
  Kind kind = Kind::kK;
  uint64_t values = 0;
  double sq_err = 0, sq_ref = 0;  // sum (x - x')^2, sum x^2
  uint64_t vectors = 0;           // token head vectors compared
  double cos_sum = 0, cos_min = 1;
  double rel_mse() const;  // sq_err / sq_ref (0 when both are 0, +inf when only sq_ref is 0)
  double mean_cosine() const { return vectors ? cos_sum / double(vectors) : 1.0; }
};

struct AttentionFidelity {
  uint64_t cases = 0;  // (layer, query head, query position) triples
  double out_cos_sum = 0, out_cos_min = 1;
  double score_cos_sum = 0, score_cos_min = 1;
  double mean_output_cosine() const { return cases ? out_cos_sum / double(cases) : 1.0; }
  double mean_score_cosine() const { return cases ? score_cos_sum / double(cases) : 1.0; }
  void Add(double out_cos, double score_cos);
  AttentionFidelity& operator+=(const AttentionFidelity& o);
};

struct LayerAttention {
  uint32_t layer = 0;
  std::vector<uint32_t> positions;  // query positions used (sorted, unique)
  AttentionFidelity attention;
};

struct Fidelity {
  std::vector<TensorFidelity> tensors;  // every K/V tensor of `decoded`, in its order
  TensorFidelity total;                 // pooled over all K/V tensors
  std::vector<LayerAttention> layers;   // layers holding both K and V
  AttentionFidelity attention;          // pooled over layers
  // Where the queries came from, the same for every layer: "reference" (the reference's Q
  // tensors), "file" (the measured file's own Q tensors), "proxy:reference-key" (the reference
  // key vector at each position); "mixed" when layers differ; "none" when no layer has K and V.
  std::string queries;
};

// Compares the K/V tensors of `decoded` with those of `reference` (matched by layer and kind;
// every decoded K/V tensor must exist in the reference with the same shape).
// Q tensors (Kind::kQ, positions) of `reference`, else of `decoded`, supply the queries;
// otherwise the reference key vector at each query position stands in (spec/MEASURE.md, "Queries"). Arithmetic in double.
Result<Fidelity> MeasureFidelity(const KvSet& decoded, const KvSet& reference, const FidelityOptions& opts = {});

// One attention case, exposed for tests: q [d_k], keys [n][d_k], values [n][d_v] (n = the causal
// prefix, j <= p). Writes softmax weights (n) and output (d_v).
void CausalAttention(const double* q, const double* keys, const double* values, uint32_t n, uint32_t d_k,
                     uint32_t d_v, std::vector<double>* weights, std::vector<double>* out);
// Cosine of two vectors: 1 when both are zero, 0 when exactly one is.
double Cosine(const double* a, const double* b, size_t n);

// ---------------------------------------------------------------------------------------------
// Backend agreement

// Which rows of a block the backend comparison decodes with the scalar reference and compares
// (spec/MEASURE.md, "Backend agreement").
enum class CompareRows : uint8_t {
  // The first and last kCompareSampleRows rows of every block are compared (f32 and f16); every
  // row of every block is still decoded, to f16, by each compared backend (by the scalar
  // reference when none is), so a block that does not decode is found. mqverify's default.
  kSample,
  kAll,  // every row of every block is compared (mqverify --compare all)
};
inline constexpr uint32_t kCompareSampleRows = 64;
const char* CompareRowsName(CompareRows c);                     // "sample", "all"
Result<CompareRows> ParseCompareRows(std::string_view text);    // "sample" | "all"

struct BackendReport {
  Backend backend = Backend::kScalar;
  bool available = false;
  // Blocks this backend really decoded (served every f32 and f16 decode of) and compared with
  // kScalar; for kScalar, the blocks decoded.
  uint64_t blocks = 0;
  uint64_t rows_compared = 0;  // rows of those blocks compared with kScalar (each to f32 and f16)
  uint64_t rows_decoded = 0;   // rows this backend decoded in all (compared or, with kSample, decoded only)
  uint64_t mismatched = 0;  // of those, blocks whose f32 or f16 output differs from kScalar in any bit
  // Blocks that passed their checksum but that this backend has no implementation for (the
  // dispatcher served them with the scalar reference): not counted in `blocks`.
  uint64_t no_path = 0;
  std::string no_path_what;   // what had no path, e.g. "f32 raw -> f32, f16; affine b8 -> f16"
  std::string first_problem;  // first mismatch or decode error, "" when none
  bool agrees() const { return available && mismatched == 0 && first_problem.empty(); }
};

// Decodes every block that passes its checksum with every backend in `backends` (kScalar is
// the reference and is always included) to f32 and to f16 and compares the bytes with kScalar:
// every row with CompareRows::kAll, the sampled rows with kSample (see CompareRows).
// Only decodes the backend itself served count (Codec::Decode reports the implementation): a
// block it has no kernel for is counted in no_path, never as agreement. A decode error of an
// available backend counts as a mismatch. Unavailable backends are reported with
// available = false and not compared.
// Blocks are compared on `threads` threads (0: all cores); the report does not depend on the count.
Result<std::vector<BackendReport>> CompareBackends(const Snapshot& snapshot, const std::vector<Backend>& backends,
                                                   unsigned threads = 1, CompareRows rows = CompareRows::kAll);

// ---------------------------------------------------------------------------------------------
// The whole verification (what mqverify reports; spec/MEASURE.md)

// What `mqverify --backend` takes: "all" (every available backend besides kScalar) or one name
// (scalar, simd, cuda; refused when not available here). kAuto is refused.
Result<std::vector<Backend>> ParseBackendList(std::string_view text);

struct VerifyOptions {
  std::vector<Backend> backends;     // compared with kScalar (always included); kAuto is refused
  CompareRows compare = CompareRows::kSample;  // mqverify --compare
  const KvSet* reference = nullptr;  // fidelity against this K/V when set
  std::string reference_name;        // for messages ("comparing with reference NAME: ...")
  FidelityOptions fidelity;
  unsigned threads = 1;  // checksums, backend comparison and decoding on this many threads (0: all cores)
};

struct VerifyReport {
  std::vector<std::string> checksum_errors;  // one message per block whose checksum mismatches
  SnapshotAccounting accounting;
  std::vector<BackendReport> backends;       // kScalar first
  std::optional<Fidelity> fidelity;          // when a reference was given and could be compared
  std::string fidelity_error;                // why it was not measured ("" when it was or none asked)
  bool checksums_ok() const { return checksum_errors.empty(); }
  // Every K/V tensor's and the total's excess over the modeled bits is explained by the listed overheads.
  bool accounting_ok() const;
  bool backends_ok() const;  // every available backend agrees bit for bit with the reference
  bool ok() const { return checksums_ok() && accounting_ok() && backends_ok(); }
};

// The verification pipeline over an open snapshot, in order: every block header (a bad one is an
// error: the file is malformed, not merely corrupt), every block checksum, accounting, backend
// agreement, and fidelity against opts.reference (decoded from `snapshot` itself; skipped with
// fidelity_error when a checksum mismatches). Problems found are in the report; only a malformed
// file or a failing comparison setup is an error.
Result<VerifyReport> VerifySnapshot(const Snapshot& snapshot, const VerifyOptions& opts = {});

// The report as `mqverify --json` prints it (spec/MEASURE.md, "JSON report"), one object and a
// newline: `path` names the file, `opts` the reference and query positions it was made with,
// `reference_format` the reference's format name ("" without a reference).
std::string VerifyReportJson(const VerifyReport& report, const std::string& path, const VerifyOptions& opts,
                             const std::string& reference_format);

}  // namespace mqkv
