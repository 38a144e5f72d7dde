// The one decode dispatcher (spec/MEASURE.md, "Backend agreement"; mqkv/codec.h, Codec::Decode):
// chooses the implementation per block and reports which one served it. Codecs provide row
// kernels (DecodeScalar, DecodeSimd); backend selection lives here and nowhere else.
#include <string>

#include "mqkv/codec.h"
#include "mqkv/cuda.h"
#include "codec/registry.h"

namespace mqkv {

Status Codec::Decode(const BlockView& b, uint32_t r0, uint32_t r1, DType out, void* dst, Backend backend,
                     Backend* served) const {
  const BlockHeader& h = *b.header;
  if (r0 > r1 || r1 > h.n_tokens)
    return OutOfRange("rows [" + std::to_string(r0) + ", " + std::to_string(r1) + ") outside the block's " +
                      std::to_string(h.n_tokens) + " rows");
  MQKV_RETURN_IF_ERROR(CheckDecodable(b));
  Backend used = Backend::kScalar;
  Status st;
  switch (backend) {
    case Backend::kCuda: {
      used = Backend::kCuda;
      ScratchExpandedBlock scratch;
      ExpandedBlock& e = scratch.block;
      if (Expand(b, &e, &st)) {  // rANS codes: decoded on the host (htscodecs), the rest on the GPU
        if (!st.ok()) break;
        if (e.header.codec == static_cast<uint8_t>(CodecId::kCodebook) && e.header.bits > 4) {
          st = Unsupported("CUDA codebook kernels hold at most 16 levels; this block has " + std::to_string(b.header->levels));
          break;
        }
        st = CudaDecodeHostBlock(e.view, r0, r1, out, dst);
      } else {
        st = CudaDecodeHostBlock(b, r0, r1, out, dst);  // upload, decode, download
      }
      break;
    }
    case Backend::kSimd:
    case Backend::kAuto:
      if (DecodeSimd(b, r0, r1, out, dst)) {
        used = Backend::kSimd;
        break;
      }
      [[fallthrough]];
    case Backend::kScalar:
      st = DecodeScalar(b, r0, r1, out, dst);
      break;
  }
  if (served) *served = used;
  return st;
}

bool Codec::NamedBy(std::string_view tc) const {
  const std::string_view n = name();
  return tc == n || (tc.size() > n.size() && tc.compare(0, n.size(), n) == 0 && tc[n.size()] == ':');
}

}  // namespace mqkv
