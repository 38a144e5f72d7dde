// The entropy-coded code part of a low-bit block (spec/CODECS.md, "Entropy-coded codes"; format
// 1.3, feature `rans`): the block's codes as one byte each, stored as
//   [XXH3-64 (seed 0) of the code bytes, 8 bytes little-endian][rANS-Nx16 order-0 stream]
// where the stream is htscodecs' rANS 4x16 / 32x16 format (CRAM 3.1) restricted to order 0 with
// neither PACK, RLE, STRIPE nor NOSZ. Encoding and the fast decode go through htscodecs; a second,
// plain decoder written from the spec is the scalar reference. Both run behind the same header
// checks (CheckStream) and the same hash check, so they accept and refuse the same parts.
#pragma once

#include <cstdint>
#include <vector>

#include "mqkv/status.h"

namespace mqkv::codec::rans {

inline constexpr uint64_t kHashBytes = 8;
// htscodecs takes sizes as unsigned int below INT_MAX; blocks of more codes are refused.
inline constexpr uint64_t kMaxCodes = 0x7FFFFFFFull - 64;

// What CheckStream learnt from a stream header.
struct StreamInfo {
  bool cat = false;      // stored verbatim (format bit 0x20)
  uint32_t ways = 4;     // interleaved states: 4, or 32 with format bit 0x04
  uint64_t body = 0;     // offset of the first state word (rANS) or byte (cat) in the part
  uint32_t freq[256] = {};  // frequencies scaled to a 4096 total (rANS)
};

// Encodes n code bytes (each < levels) into a code part.
Status Encode(const uint8_t* codes, uint64_t n, std::vector<uint8_t>* part);

// The header rules of spec/CODECS.md: format byte, recorded size == n, frequency table over
// symbols < levels with a power-of-two total <= 4096, every state in [2^15, 2^31), or, verbatim,
// exactly n bytes each < levels. Errors are FormatError naming the rule.
Status CheckStream(const uint8_t* part, uint64_t bytes, uint64_t n, uint32_t levels, StreamInfo* info);

// Decodes a code part into n bytes: CheckStream, then the reference decoder (reference = true)
// or htscodecs, then the hash of the result against the stored one. A corrupt stream is a
// FormatError; neither decoder reads outside [part, part + bytes).
Status Decode(const uint8_t* part, uint64_t bytes, uint64_t n, uint32_t levels, bool reference, uint8_t* out);

}  // namespace mqkv::codec::rans
