// The rANS code part (rans.h; spec/CODECS.md "Entropy-coded codes").
#include "rans.h"

#include <htscodecs/rANS_static4x16.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "../format/container.h"

namespace mqkv::codec::rans {
namespace {

constexpr uint8_t kX32 = 0x04, kCat = 0x20;
constexpr uint32_t kTotal = 4096, kLow = 1u << 15;

uint32_t LoadU32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}

Status Bad(const std::string& what) { return FormatError("rANS code part: " + what); }

// A uint7 (htscodecs var_put_u32): big-endian groups of 7 bits, bit 7 set on every byte but the
// last; at most 5 bytes, no leading empty group, value < 2^32.
bool ReadUint7(const uint8_t* p, const uint8_t* end, const uint8_t** next, uint32_t* v) {
  uint64_t x = 0;
  for (int k = 0; k < 5; ++k) {
    if (p >= end) return false;
    const uint8_t c = *p++;
    if (k == 0 && c == 0x80) return false;
    x = (x << 7) | (c & 0x7F);
    if (!(c & 0x80)) {
      if (x > 0xFFFFFFFFull) return false;
      *v = static_cast<uint32_t>(x);
      *next = p;
      return true;
    }
  }
  return false;
}

}  // namespace

Status Encode(const uint8_t* codes, uint64_t n, std::vector<uint8_t>* part) {
  if (n > kMaxCodes) return InvalidArgument("rANS code part: " + std::to_string(n) + " codes in one block (at most " + std::to_string(kMaxCodes) + "); split the tensor into smaller blocks");
  const uint32_t in = static_cast<uint32_t>(n);
  unsigned int bound = rans_compress_bound_4x16(in, RANS_ORDER_X32);
  part->assign(kHashBytes + bound, 0);
  const uint64_t h = format::Checksum(codes, n);
  for (int k = 0; k < 8; ++k) (*part)[k] = static_cast<uint8_t>(h >> (8 * k));
  unsigned int out = bound;
  // htscodecs keeps the input const in practice; its API does not say so.
  if (!rans_compress_to_4x16(const_cast<uint8_t*>(codes), in, part->data() + kHashBytes, &out, RANS_ORDER_X32))
    return Internal("htscodecs rans_compress_to_4x16 failed on " + std::to_string(n) + " codes");
  part->resize(kHashBytes + out);
  return Status::OK();
}

Status CheckStream(const uint8_t* part, uint64_t bytes, uint64_t n, uint32_t levels, StreamInfo* info) {
  if (bytes < kHashBytes + 2) return Bad(std::to_string(bytes) + " bytes, shorter than the hash, format byte and size");
  const uint8_t* p = part + kHashBytes;
  const uint8_t* end = part + bytes;
  const uint8_t format = *p++;
  if (format & ~(kX32 | kCat))
    return Bad("format byte " + std::to_string(format) + " uses a mode outside mqkv's profile (only order 0, X32 and CAT)");
  info->cat = format & kCat;
  info->ways = format & kX32 ? 32 : 4;
  uint32_t size = 0;
  if (!ReadUint7(p, end, &p, &size)) return Bad("recorded size is not a valid uint7");
  if (size != n) return Bad("records " + std::to_string(size) + " codes, the block holds " + std::to_string(n));
  if (info->cat) {
    if (uint64_t(end - p) != n) return Bad("verbatim stream of " + std::to_string(end - p) + " bytes for " + std::to_string(n) + " codes");
    for (uint64_t i = 0; i < n; ++i)
      if (p[i] >= levels) return Bad("code " + std::to_string(i) + " is " + std::to_string(p[i]) + ", not below levels=" + std::to_string(levels));
    info->body = uint64_t(p - part);
    return Status::OK();
  }
  if (n == 0) return Bad("an empty block's codes must be stored verbatim (format bit 0x20)");
  // Alphabet: symbols in increasing order, a run of consecutive symbols abbreviated as its first
  // two and a count of the rest; 0 ends the list (symbol 0 can only come first).
  bool present[256] = {};
  if (p >= end) return Bad("stream ends in the alphabet");
  uint32_t sym = *p++, run = 0;
  int last = -1;
  while (true) {
    if (sym >= levels) return Bad("alphabet holds symbol " + std::to_string(sym) + ", not below levels=" + std::to_string(levels));
    if (int(sym) <= last) return Bad("alphabet symbols are not increasing");
    present[sym] = true;
    last = int(sym);
    if (run > 0) {
      --run;
      ++sym;
      if (sym > 255) return Bad("alphabet run passes symbol 255");
      continue;
    }
    if (p >= end) return Bad("stream ends in the alphabet");
    const uint32_t next = *p++;
    if (next == 0) break;
    if (next == sym + 1) {
      if (p >= end) return Bad("stream ends in the alphabet");
      run = *p++;
    }
    sym = next;
  }
  uint64_t total = 0;
  for (int s = 0; s < 256; ++s) {
    info->freq[s] = 0;
    if (!present[s]) continue;
    uint32_t f = 0;
    if (!ReadUint7(p, end, &p, &f)) return Bad("stream ends in the frequency table");
    if (f == 0 || f > kTotal) return Bad("symbol " + std::to_string(s) + " has frequency " + std::to_string(f) + " (1..4096)");
    info->freq[s] = f;
    total += f;
  }
  if (total == 0 || total > kTotal || (total & (total - 1)) != 0)
    return Bad("frequencies sum to " + std::to_string(total) + ", not a power of two <= 4096");
  uint32_t shift = 0;
  while ((total << shift) < kTotal) ++shift;
  for (int s = 0; s < 256; ++s) info->freq[s] <<= shift;
  if (uint64_t(end - p) < uint64_t(info->ways) * 4) return Bad("stream ends before its " + std::to_string(info->ways) + " states");
  for (uint32_t j = 0; j < info->ways; ++j) {
    const uint32_t x = LoadU32(p + 4 * j);
    if (x < kLow || x >= 0x80000000u) return Bad("state " + std::to_string(j) + " is " + std::to_string(x) + ", outside [2^15, 2^31)");
  }
  info->body = uint64_t(p - part);
  return Status::OK();
}

Status Decode(const uint8_t* part, uint64_t bytes, uint64_t n, uint32_t levels, bool reference, uint8_t* out) {
  StreamInfo info;
  MQKV_RETURN_IF_ERROR(CheckStream(part, bytes, n, levels, &info));
  const uint8_t* end = part + bytes;
  if (info.cat) {
    if (n != 0) std::memcpy(out, part + info.body, n);  // out may be null for an empty block
  } else if (reference) {
    // spec/CODECS.md, "rANS decode": symbol i uses state i mod N.
    uint32_t cum[257];
    uint8_t sym_of[kTotal];
    cum[0] = 0;
    for (int s = 0; s < 256; ++s) {
      cum[s + 1] = cum[s] + info.freq[s];
      for (uint32_t f = cum[s]; f < cum[s + 1]; ++f) sym_of[f] = static_cast<uint8_t>(s);
    }
    uint32_t x[32];
    const uint8_t* p = part + info.body;
    for (uint32_t j = 0; j < info.ways; ++j, p += 4) x[j] = LoadU32(p);
    const uint32_t mask = info.ways - 1;
    for (uint64_t i = 0; i < n; ++i) {
      uint32_t& r = x[i & mask];
      const uint32_t m = r & (kTotal - 1);
      const uint8_t s = sym_of[m];
      out[i] = s;
      r = info.freq[s] * (r >> 12) + m - cum[s];
      // With fewer than two bytes left a renormalization reads nothing (htscodecs' rule, so both
      // decoders agree on a truncated stream); the hash below decides whether the codes are right.
      if (r < kLow && end - p >= 2) {
        r = (r << 16) | uint32_t(p[0]) | (uint32_t(p[1]) << 8);
        p += 2;
      }
    }
  } else {
    unsigned int got = static_cast<unsigned int>(n);
    if (!rans_uncompress_to_4x16(const_cast<uint8_t*>(part + kHashBytes), static_cast<unsigned int>(bytes - kHashBytes), out, &got) ||
        got != n)
      return Bad("htscodecs could not decode the stream");
  }
  uint64_t stored = 0;
  for (int k = 7; k >= 0; --k) stored = (stored << 8) | part[k];
  if (format::Checksum(out, n) != stored) return Bad("the decoded codes do not match their XXH3-64 hash (corrupt stream)");
  return Status::OK();
}

}  // namespace mqkv::codec::rans
