#include "codec/rope.h"

#include <cmath>

#include "codec/rope_kernels.h"
#include "codec/simd.h"

namespace mqkv::rope {

void CosSin(double a, double* c, double* s) {
  const double one = 1.0;
  CosSinRow(a, &one, 1, c, s);  // a * 1.0 == a
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
  std::vector<double> cs(2 * r.theta.size());
  RotateRowsAny(r.theta.data(), r.theta.size(), r.style == RopeUndo::kNorm, sign, rows, n_rows, n_heads, head_dim,
                positions, cs.data());
}

void RotateOn(Backend backend, const RopeUndo& r, float* rows, uint32_t n_rows, uint32_t n_heads, uint32_t head_dim,
              const int32_t* positions, int sign) {
  if (backend == Backend::kScalar || !codec::simd::RopeRotate(r, rows, n_rows, n_heads, head_dim, positions, sign))
    Rotate(r, rows, n_rows, n_heads, head_dim, positions, sign);
}

}  // namespace mqkv::rope
