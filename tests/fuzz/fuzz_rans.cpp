// Fuzz target: the entropy-coded code part (spec/CODECS.md, "Entropy-coded codes"). Both decoders
// (the spec's reference and htscodecs) run on every input: any part gives a clean Status, never a
// crash, an over-read or UB, and the two always agree (the same acceptance, the same codes).
//   byte 0: mode (bit 0: the rest are codes to encode first; else the rest is a code part)
//   byte 1: levels - 3 (3..256)   bytes 2..3: n, little-endian (part mode)   byte 4: corrupt-at (codes mode)
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "codec/rans.h"

using namespace mqkv::codec;

namespace {

void DecodeBoth(const uint8_t* part, uint64_t bytes, uint64_t n, uint32_t levels, const uint8_t* expect) {
  // Exactly-sized buffers: a write past n shows under ASan.
  std::vector<uint8_t> a(n ? n : 1), b(n ? n : 1);
  const mqkv::Status ra = rans::Decode(part, bytes, n, levels, true, a.data());
  const mqkv::Status rb = rans::Decode(part, bytes, n, levels, false, b.data());
  if (ra.ok() != rb.ok()) std::abort();                              // one decoder accepts what the other refuses
  if (ra.ok() && std::memcmp(a.data(), b.data(), n) != 0) std::abort();  // both accept, different codes
  if (ra.ok() && expect && std::memcmp(a.data(), expect, n) != 0) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  const uint32_t levels = 3u + data[1];
  if (levels > 256) return 0;
  if (data[0] & 1) {
    std::vector<uint8_t> codes(data + 5, data + size);
    for (uint8_t& c : codes) c = static_cast<uint8_t>(c % levels);
    std::vector<uint8_t> part;
    if (!rans::Encode(codes.data(), codes.size(), &part).ok()) std::abort();
    DecodeBoth(part.data(), part.size(), codes.size(), levels, codes.data());
    // One byte changed (after the hash, so the stream itself is hit): both still agree.
    if (part.size() > rans::kHashBytes) {
      const size_t at = rans::kHashBytes + data[4] % (part.size() - rans::kHashBytes);
      part[at] ^= static_cast<uint8_t>(data[2] | 1);
      DecodeBoth(part.data(), part.size(), codes.size(), levels, nullptr);
    }
    // Truncated by data[3] bytes.
    const size_t cut = std::min<size_t>(data[3], part.size());
    DecodeBoth(part.data(), part.size() - cut, codes.size(), levels, nullptr);
  } else {
    const uint64_t n = uint64_t(data[2]) | uint64_t(data[3]) << 8;
    std::vector<uint8_t> part(data + 5, data + size);  // exactly sized: an over-read shows under ASan
    DecodeBoth(part.data(), part.size(), n, levels, nullptr);
  }
  return 0;
}
