// The codebook codec (CodecId 4, spec/CODECS.md "codebook"): x' = L[q] * s with 2^b fp32 levels
// stored in the block and one fp16 scale per group; same groups, code stream, sinks, residual
// and rotation as affine.
#include <algorithm>
#include <cmath>
#include <vector>

#include "codecs.h"
#include "lowbit.h"
#include "simd.h"

namespace mqkv::codec {
namespace lowbit {

void DecodeCodebookRowsScalar(const BlockHeader& h, const uint8_t* payload, uint32_t t0, uint32_t t1, float* out) {
  const elem::Geometry g = elem::geometry(h);
  const uint8_t* codes = payload + h.parts[kPartCodes].offset;
  float levels[256];
  for (uint32_t i = 0; i <= CodeMax(h); ++i) levels[i] = elem::load_f32(payload + h.parts[kPartCodebook].offset + 4 * i);
  std::vector<float> scale(g.group_cols);
  std::vector<uint8_t> negative;  // sign rule, once per call
  if (h.rotation == static_cast<uint8_t>(Rotation::kHadamard))
    for (uint32_t i = 0; i < h.head_dim; ++i) negative.push_back(elem::hadamard_negative(h.rot_seed, i));
  uint32_t cur = UINT32_MAX;
  for (uint32_t t = t0; t < t1; ++t) {
    const uint32_t gr = t / g.row_span;
    if (gr != cur) {
      for (uint32_t gc = 0; gc < g.group_cols; ++gc) scale[gc] = elem::meta_field(h, g, payload, elem::kFieldScale, gr, gc);
      cur = gr;
    }
    float* o = out + uint64_t(t - t0) * g.row_values;
    const uint64_t base = uint64_t(t) * g.row_values;
    for (uint32_t e = 0; e < g.row_values; ++e)
      o[e] = elem::codebook_value(levels[elem::read_code(codes, base + e, h.bits)], scale[e / g.col_span]);
    if (!negative.empty())
      for (uint32_t v = 0; v < g.row_values; v += h.head_dim) elem::inverse_rotate(o + v, h.head_dim, h.rot_block, negative.data());
  }
}

}  // namespace lowbit

namespace {

// Encoder scale of one group (informative, spec/CODECS.md "codebook encoder").
float GroupScale(ScaleRule rule, std::vector<float> v, float max_level) {
  if (rule == ScaleRule::kRms) {  // fp32(sqrt(sum x^2 / n)), the sum in binary64 in group order
    double sum = 0.0;
    for (float x : v) sum += double(x) * double(x);
    return static_cast<float>(std::sqrt(sum / double(v.size())));
  }
  for (float& x : v) x = std::fabs(x);
  if (rule == ScaleRule::kAbsMax) return *std::max_element(v.begin(), v.end()) / max_level;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double median = n % 2 ? double(v[n / 2]) : (double(v[n / 2 - 1]) + double(v[n / 2])) / 2.0;
  double sum = 0.0;
  for (float x : v) sum += x;
  return static_cast<float>(0.6 * median + 0.4 * (sum / double(n)));
}

// Lloyd's algorithm (1-D k-means) on the scale-normalized values u, from the levels L (strictly
// ascending): thresholds at the midpoints of neighbouring levels, each level moved to the mean of
// the values between its thresholds (a level with none keeps its place), until no level moves by
// more than 1e-6 of the level range or after 50 rounds. Binary64 over the sorted values and their
// prefix sums. Returns the last strictly ascending binary32 levels. Informative (spec/CODECS.md,
// "Codebook encoder"): the decoder reads whatever levels the block stores.
std::vector<float> FitLloyd(std::vector<double> u, const std::vector<float>& start) {
  if (u.empty()) return start;
  std::sort(u.begin(), u.end());
  std::vector<double> prefix(u.size() + 1, 0.0);
  for (size_t i = 0; i < u.size(); ++i) prefix[i + 1] = prefix[i] + u[i];
  std::vector<double> L(start.begin(), start.end());
  std::vector<float> best = start;
  for (int round = 0; round < 50; ++round) {
    std::vector<double> next(L.size());
    size_t lo = 0;
    for (size_t k = 0; k < L.size(); ++k) {
      const size_t hi = k + 1 < L.size()
                            ? size_t(std::lower_bound(u.begin(), u.end(), (L[k] + L[k + 1]) / 2.0) - u.begin())
                            : u.size();
      next[k] = hi > lo ? (prefix[hi] - prefix[lo]) / double(hi - lo) : L[k];
      lo = std::max(lo, hi);
    }
    double moved = 0.0;
    for (size_t k = 0; k < L.size(); ++k) moved = std::max(moved, std::fabs(next[k] - L[k]));
    std::vector<float> f(next.begin(), next.end());
    bool ascending = true;
    for (size_t k = 0; k < f.size(); ++k) ascending = ascending && std::isfinite(f[k]) && (k == 0 || f[k - 1] < f[k]);
    if (!ascending) break;
    best = f;
    L = next;
    if (moved <= 1e-6 * (L.back() - L.front())) break;
  }
  return best;
}

class CodebookCodec final : public lowbit::LowBitCodec {
 public:
  CodebookCodec() : LowBitCodec(CodecId::kCodebook, "codebook", &lowbit::DecodeCodebookRowsScalar, kFeatureCodebook) {}

  Status Encode(const CodecSpec& spec, const float* src, BlockShape shape, EncodedBlock* out) const override {
    if (spec.codec != CodecId::kCodebook) return InvalidArgument("codebook encoder given spec " + spec.ToString());
    // Specs built in code skip CodecSpec::Parse: check the levels and thresholds here too.
    const std::vector<float>& L = spec.levels;
    if (spec.entropy == Entropy::kRans ? (spec.bits != 8 || L.size() < 3 || L.size() > 256)
                                       : (spec.bits < 1 || spec.bits > 4 || L.size() != (1u << spec.bits)))
      return InvalidArgument("codebook bits=" + std::to_string(spec.bits) + " needs 2^bits levels (entropy=rans: bits=8, 3..256 levels), got " +
                             std::to_string(L.size()));
    for (size_t i = 0; i < L.size(); ++i)
      if (!std::isfinite(L[i]) || (i && !(L[i - 1] < L[i]))) return InvalidArgument("codebook levels must be finite and strictly ascending");
    std::vector<float> thr = spec.thresholds;
    if (thr.empty())
      for (size_t i = 0; i + 1 < L.size(); ++i) thr.push_back((L[i] + L[i + 1]) / 2.0f);
    if (thr.size() != L.size() - 1) return InvalidArgument("codebook needs one threshold fewer than levels");
    for (size_t i = 0; i < thr.size(); ++i)
      if (!(L[i] <= thr[i] && thr[i] <= L[i + 1])) return InvalidArgument("codebook thresholds must lie between neighbouring levels");

    std::vector<float> x;
    MQKV_RETURN_IF_ERROR(lowbit::BeginEncode(spec, src, shape, out, &x));
    const BlockHeader& h = out->header;
    const elem::Geometry g = elem::geometry(h);
    const float max_level = std::max(std::fabs(L.front()), std::fabs(L.back()));
    std::vector<float> scales(uint64_t(g.group_rows) * g.group_cols);
    lowbit::ForEachGroup(g, x.data(), [&](uint32_t gr, uint32_t gc, const std::vector<float>& v) {
      scales[uint64_t(gr) * g.group_cols + gc] = GroupScale(spec.scale_rule, v, max_level);
    });
    std::vector<float> s;
    MQKV_RETURN_IF_ERROR(lowbit::StoreMetaField(g, elem::kFieldScale, scales, out, &s));
    std::vector<float> levels = L;
    if (spec.fit_lloyd) {  // levels fitted to this block's values over their stored scales
      std::vector<double> u;
      u.reserve(uint64_t(g.q_rows) * g.row_values);
      lowbit::ForEachGroup(g, x.data(), [&](uint32_t gr, uint32_t gc, const std::vector<float>& v) {
        const double sc = s[uint64_t(gr) * g.group_cols + gc];
        if (sc > 0.0 && std::isfinite(sc))
          for (float e : v) u.push_back(double(e) / sc);
      });
      levels = FitLloyd(std::move(u), L);
      thr.clear();
      for (size_t i = 0; i + 1 < levels.size(); ++i) thr.push_back((levels[i] + levels[i + 1]) / 2.0f);
    }
    uint8_t* cbp = out->parts[kPartCodebook].data();
    for (size_t i = 0; i < levels.size(); ++i) {
      const uint32_t u = f32_bits(levels[i]);
      for (int k = 0; k < 4; ++k) cbp[4 * i + k] = static_cast<uint8_t>(u >> (8 * k));
    }
    // q = number of thresholds t_i with x >= t_i * s' (against the stored fp16 scale).
    std::vector<float> cut(thr.size());
    uint64_t cur = UINT64_MAX;
    lowbit::WriteCodes(g, h.bits, &out->parts[kPartCodes], [&](uint32_t t, uint32_t e, uint32_t gr, uint32_t gc) {
      const uint64_t i = uint64_t(gr) * g.group_cols + gc;
      if (i != cur) {
        for (size_t k = 0; k < thr.size(); ++k) cut[k] = thr[k] * s[i];
        cur = i;
      }
      const float v = x[uint64_t(t) * g.row_values + e];
      uint32_t q = 0;
      for (float c : cut) q += v >= c ? 1u : 0u;
      return q;
    });
    return lowbit::IsRans(h) ? lowbit::EntropyCodeCodes(out) : Status::OK();
  }

  // Levels come from the block; thresholds and the scale rule are encoder choices that the block
  // does not record (the tensor's spec string in the footer keeps them), so they read as defaults.
  CodecSpec SpecOf(const BlockHeader& h, const uint8_t* payload) const override {
    CodecSpec s = lowbit::SpecOfHeader(h);
    for (uint32_t i = 0; i <= lowbit::CodeMax(h); ++i)
      s.levels.push_back(mqkv::elem::load_f32(payload + h.parts[kPartCodebook].offset + 4 * i));
    return s;
  }
};

}  // namespace

const Codec* Codebook() {
  static const CodebookCodec c;
  return &c;
}

}  // namespace mqkv::codec
