#include "codec/rope.h"

#include <cmath>

namespace mqkv::rope {
namespace {

// pi/2 = kPio2a + kPio2b + kPio2c: two 21-bit leading parts (k * part is exact for |k| < 2^32)
// and the binary64 nearest to the rest.
constexpr double kTwoOverPi = 0x1.45f306dc9c883p-1;
constexpr double kPio2a = 0x1.921fb00000000p+0;
constexpr double kPio2b = 0x1.5110b00000000p-22;
constexpr double kPio2c = 0x1.18469898cc517p-44;
// (-1)^k / (2k+1)! and (-1)^k / (2k)!, k = 1..8 / 1..9, each the binary64 nearest.
constexpr double kS[8] = {-0x1.5555555555555p-3, 0x1.1111111111111p-7,  -0x1.a01a01a01a01ap-13, 0x1.71de3a556c734p-19,
                          -0x1.ae64567f544e4p-26, 0x1.6124613a86d09p-33, -0x1.ae7f3e733b81fp-41, 0x1.952c77030ad4ap-49};
constexpr double kC[9] = {-0x1.0000000000000p-1, 0x1.5555555555555p-5,  -0x1.6c16c16c16c17p-10,
                          0x1.a01a01a01a01ap-16,  -0x1.27e4fb7789f5cp-22, 0x1.1eed8eff8d898p-29,
                          -0x1.93974a8c07c9dp-37, 0x1.ae7f3e733b81fp-45, -0x1.6827863b97d97p-53};

}  // namespace

void CosSin(double a, double* c, double* s) {
  const double k = std::nearbyint(a * kTwoOverPi);  // ties to even (the default rounding mode)
  const double r = ((a - k * kPio2a) - k * kPio2b) - k * kPio2c;
  const double z = r * r;
  double ps = kS[7];
  for (int i = 6; i >= 0; --i) ps = kS[i] + z * ps;
  const double sr = r + r * (z * ps);
  double pc = kC[8];
  for (int i = 7; i >= 0; --i) pc = kC[i] + z * pc;
  const double cr = 1.0 + z * pc;
  switch (static_cast<int64_t>(k) & 3) {
    case 0: *c = cr, *s = sr; break;
    case 1: *c = -sr, *s = cr; break;
    case 2: *c = -cr, *s = -sr; break;
    default: *c = sr, *s = -cr; break;
  }
}

Result<RopeUndo> TableFor(const ModelInfo& m, uint32_t head_dim) {
  RopeUndo r;
  if (m.rope_type == "norm") r.style = RopeUndo::kNorm;
  else if (m.rope_type == "neox") r.style = RopeUndo::kNeox;
  else return InvalidArgument("prerope=1 needs the model's RoPE type to be norm or neox (this snapshot records \"" + m.rope_type + "\")");
  if (!(m.rope_base > 0.0f) || !std::isfinite(m.rope_base))
    return InvalidArgument("prerope=1 needs the model's RoPE base (this snapshot records " + std::to_string(m.rope_base) + ")");
  if (m.k_rope == KRope::kPreRope) return InvalidArgument("prerope=1: this snapshot's keys are already stored before RoPE (model.k_rope = pre)");
  if (head_dim < 2 || head_dim % 2) return InvalidArgument("prerope=1 needs an even head_dim, got " + std::to_string(head_dim));
  const uint32_t n = head_dim;
  for (uint32_t i = 0; i < n / 2; ++i) r.theta.push_back(std::pow(double(m.rope_base), -2.0 * double(i) / double(n)));
  return r;
}

Status Check(const RopeUndo& r, uint32_t head_dim, const std::string& what) {
  if (r.style > RopeUndo::kNeox) return FormatError(what + ": rope_undo.style " + std::to_string(r.style) + " is unknown");
  if (r.theta.empty() || 2 * uint64_t(r.theta.size()) > head_dim)
    return FormatError(what + ": rope_undo has " + std::to_string(r.theta.size()) + " pairs for head_dim " + std::to_string(head_dim));
  for (double t : r.theta)
    if (!(t >= 0.0 && t <= 1.0)) return FormatError(what + ": rope_undo.theta holds " + std::to_string(t) + ", outside [0, 1]");
  return Status::OK();
}

void Rotate(const RopeUndo& r, float* rows, uint32_t n_rows, uint32_t n_heads, uint32_t head_dim,
            const int32_t* positions, int sign) {
  const size_t pairs = r.theta.size();
  const size_t half = pairs;  // neox: pair i is (i, i + pairs)
  std::vector<double> cs(2 * pairs);
  for (uint32_t j = 0; j < n_rows; ++j) {
    const double p = double(positions[j]);
    for (size_t i = 0; i < pairs; ++i) CosSin(p * r.theta[i], &cs[2 * i], &cs[2 * i + 1]);
    for (uint32_t h = 0; h < n_heads; ++h) {
      float* v = rows + (uint64_t(j) * n_heads + h) * head_dim;
      for (size_t i = 0; i < pairs; ++i) {
        float& e0 = v[r.style == RopeUndo::kNorm ? 2 * i : i];
        float& e1 = v[r.style == RopeUndo::kNorm ? 2 * i + 1 : i + half];
        const double x0 = e0, x1 = e1, c = cs[2 * i], s = cs[2 * i + 1];
        if (sign > 0) {
          e0 = static_cast<float>(x0 * c - x1 * s);
          e1 = static_cast<float>(x0 * s + x1 * c);
        } else {
          e0 = static_cast<float>(x0 * c + x1 * s);
          e1 = static_cast<float>(x1 * c - x0 * s);
        }
      }
    }
  }
}

}  // namespace mqkv::rope
