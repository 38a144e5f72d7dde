// The zip subset npz needs (zip.h; spec/INTEROP.md, "npz").
#include "zip.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

namespace mqkv::adapters::zip {
namespace {
constexpr uint32_t kSigLocal = 0x04034b50, kSigCentral = 0x02014b50, kSigEnd = 0x06054b50;
constexpr uint32_t kSigEnd64 = 0x06064b50, kSigLocator64 = 0x07064b50;
constexpr uint64_t kMaxDeflateRatio = 1032;  // deflate cannot expand a byte into more than ~1032

template <typename T>
T Get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void Put16(std::string* s, uint16_t v) { s->append(reinterpret_cast<const char*>(&v), 2); }
void Put32(std::string* s, uint32_t v) { s->append(reinterpret_cast<const char*>(&v), 4); }
void Put64(std::string* s, uint64_t v) { s->append(reinterpret_cast<const char*>(&v), 8); }

}  // namespace

Result<std::vector<Member>> ReadCentralDirectory(const uint8_t* d, uint64_t n) {
  if (n < 22) return FormatErrorAt(0, "zip file of " + std::to_string(n) + " bytes is too short for an end-of-central-directory record");
  uint64_t eocd = UINT64_MAX;
  const uint64_t lowest = n - 22 > 0xFFFF ? n - 22 - 0xFFFF : 0;
  for (uint64_t p = n - 22 + 1; p-- > lowest;)
    if (Get<uint32_t>(d + p) == kSigEnd && p + 22 + Get<uint16_t>(d + p + 20) == n) {
      eocd = p;
      break;
    }
  if (eocd == UINT64_MAX) return FormatErrorAt(n, "no zip end-of-central-directory record (truncated zip?)");
  if (Get<uint16_t>(d + eocd + 4) != 0 || Get<uint16_t>(d + eocd + 6) != 0) return Unsupported("multi-disk zip archives are not supported");
  uint64_t entries = Get<uint16_t>(d + eocd + 10);
  uint64_t cd_size = Get<uint32_t>(d + eocd + 12);
  uint64_t cd_off = Get<uint32_t>(d + eocd + 16);
  if (eocd >= 20 && Get<uint32_t>(d + eocd - 20) == kSigLocator64) {
    const uint64_t z = Get<uint64_t>(d + eocd - 20 + 8);
    if (z > eocd - 20 || eocd - 20 - z < 56 || Get<uint32_t>(d + z) != kSigEnd64)
      return FormatErrorAt(eocd - 20, "zip64 end-of-central-directory locator points to no zip64 record");
    entries = Get<uint64_t>(d + z + 32);
    cd_size = Get<uint64_t>(d + z + 40);
    cd_off = Get<uint64_t>(d + z + 48);
  }
  if (cd_off > n || cd_size > n - cd_off)
    return FormatErrorAt(eocd, "zip central directory [" + std::to_string(cd_off) + ", +" + std::to_string(cd_size) + ") lies outside the " +
                                   std::to_string(n) + "-byte file");
  if (entries > cd_size / 46) return FormatErrorAt(eocd, "zip claims " + std::to_string(entries) + " entries, more than its central directory holds");
  std::vector<Member> out;
  uint64_t p = cd_off;
  const uint64_t end = cd_off + cd_size;
  for (uint64_t i = 0; i < entries; ++i) {
    if (end - p < 46 || Get<uint32_t>(d + p) != kSigCentral) return FormatErrorAt(p, "bad zip central directory entry");
    Member m;
    m.flags = Get<uint16_t>(d + p + 8);
    m.method = Get<uint16_t>(d + p + 10);
    m.crc = Get<uint32_t>(d + p + 16);
    m.csize = Get<uint32_t>(d + p + 20);
    m.usize = Get<uint32_t>(d + p + 24);
    const uint16_t nlen = Get<uint16_t>(d + p + 28), xlen = Get<uint16_t>(d + p + 30), clen = Get<uint16_t>(d + p + 32);
    m.local = Get<uint32_t>(d + p + 42);
    if (uint64_t(46) + nlen + xlen + clen > end - p) return FormatErrorAt(p, "zip central directory entry runs past the directory");
    m.name.assign(reinterpret_cast<const char*>(d + p + 46), nlen);
    // ZIP64 extended information: the fields whose 32-bit value is 0xFFFFFFFF, in this order.
    const uint8_t* x = d + p + 46 + nlen;
    for (uint32_t q = 0; q + 4 <= xlen;) {
      const uint16_t id = Get<uint16_t>(x + q), sz = Get<uint16_t>(x + q + 2);
      if (q + 4 + sz > xlen) return FormatErrorAt(p, "zip extra field runs past its entry");
      if (id == 0x0001) {
        uint32_t r = q + 4;
        for (uint64_t* field : {&m.usize, &m.csize, &m.local}) {
          if (*field != 0xFFFFFFFFu) continue;
          if (r + 8 > q + 4 + sz) return FormatErrorAt(p, "zip64 extra field is too short");
          *field = Get<uint64_t>(x + r);
          r += 8;
        }
      }
      q += 4 + sz;
    }
    out.push_back(std::move(m));
    p += 46 + nlen + xlen + clen;
  }
  return out;
}

// A member's bytes: a view into the mapping when stored, else inflated into `owned`.
Result<std::pair<const uint8_t*, uint64_t>> MemberBytes(const uint8_t* d, uint64_t n, const Member& m, std::vector<uint8_t>* owned) {
  const std::string where = "zip member \"" + m.name + "\"";
  if (m.flags & 1) return Unsupported(where + " is encrypted");
  if (m.method != 0 && m.method != 8) return Unsupported(where + " uses compression method " + std::to_string(m.method) + " (stored and deflate only)");
  if (m.local > n || n - m.local < 30 || Get<uint32_t>(d + m.local) != kSigLocal)
    return FormatErrorAt(m.local, where + ": no local header at offset " + std::to_string(m.local));
  const uint16_t nlen = Get<uint16_t>(d + m.local + 26), xlen = Get<uint16_t>(d + m.local + 28);
  const uint64_t data = m.local + 30 + nlen + xlen;
  if (data > n || m.csize > n - data)
    return FormatErrorAt(m.local, where + ": " + std::to_string(m.csize) + " compressed bytes run past the end of the file (truncated zip?)");
  if (std::string_view(reinterpret_cast<const char*>(d + m.local + 30), nlen) != m.name)
    return FormatErrorAt(m.local, where + ": local header names a different member");
  const uint8_t* src = d + data;
  const uint8_t* bytes = src;
  if (m.method == 0) {
    if (m.csize != m.usize) return FormatErrorAt(m.local, where + ": stored member with different compressed and uncompressed sizes");
  } else {
    if (m.usize > m.csize * kMaxDeflateRatio + kMaxDeflateRatio)  // csize <= file size: no overflow
      return FormatErrorAt(m.local, where + ": claims " + std::to_string(m.usize) + " bytes from " + std::to_string(m.csize) +
                                        " deflated bytes, more than deflate can produce");
    owned->resize(m.usize);
    z_stream zs{};
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) return Internal("zlib inflateInit2 failed");
    uint64_t in_left = m.csize, out_left = m.usize;
    zs.next_in = const_cast<Bytef*>(src);
    zs.next_out = owned->data();
    int rc = Z_OK;
    while (rc == Z_OK) {
      const uInt in_chunk = static_cast<uInt>(std::min<uint64_t>(in_left, 1u << 30));
      const uInt out_chunk = static_cast<uInt>(std::min<uint64_t>(out_left, 1u << 30));
      zs.avail_in = in_chunk;
      zs.avail_out = out_chunk;
      rc = inflate(&zs, Z_NO_FLUSH);
      in_left -= in_chunk - zs.avail_in;
      out_left -= out_chunk - zs.avail_out;
      if (rc == Z_BUF_ERROR && (in_left == 0 || out_left == 0)) break;
      if (rc == Z_OK && in_chunk == zs.avail_in && out_chunk == zs.avail_out) break;  // no progress
    }
    inflateEnd(&zs);
    if (rc != Z_STREAM_END || out_left != 0)
      return FormatErrorAt(data, where + ": deflate stream is corrupt or does not give the " + std::to_string(m.usize) + " bytes its entry states");
    bytes = owned->data();
  }
  uint32_t crc = static_cast<uint32_t>(crc32_z(0, nullptr, 0));
  crc = static_cast<uint32_t>(crc32_z(crc, bytes, m.usize));
  if (crc != m.crc) {
    Status s = ChecksumMismatch(where + ": CRC-32 mismatch (stored " + std::to_string(m.crc) + ", computed " + std::to_string(crc) + ")");
    return s.WithOffset(data);
  }
  return std::make_pair(bytes, m.usize);
}

Status Writer::Add(const std::string& name, const std::string& prefix, const uint8_t* body, uint64_t body_bytes) {
  Entry e;
  e.name = name;
  e.size = prefix.size() + body_bytes;
  e.offset = f_->position();
  uint32_t crc = static_cast<uint32_t>(crc32_z(0, nullptr, 0));
  crc = static_cast<uint32_t>(crc32_z(crc, reinterpret_cast<const Bytef*>(prefix.data()), prefix.size()));
  e.crc = static_cast<uint32_t>(crc32_z(crc, body, body_bytes));
  const bool z64 = e.size >= 0xFFFFFFFFull;
  std::string h;
  Put32(&h, kSigLocal);
  Put16(&h, z64 ? 45 : 20);
  Put16(&h, 0);             // flags
  Put16(&h, 0);             // stored
  Put16(&h, 0);             // time 00:00:00
  Put16(&h, (0 << 9) | (1 << 5) | 1);  // date 1980-01-01: reproducible bytes
  Put32(&h, e.crc);
  Put32(&h, z64 ? 0xFFFFFFFFu : static_cast<uint32_t>(e.size));
  Put32(&h, z64 ? 0xFFFFFFFFu : static_cast<uint32_t>(e.size));
  Put16(&h, static_cast<uint16_t>(name.size()));
  Put16(&h, z64 ? 20 : 0);
  h += name;
  if (z64) {
    Put16(&h, 0x0001);
    Put16(&h, 16);
    Put64(&h, e.size);
    Put64(&h, e.size);
  }
  MQKV_RETURN_IF_ERROR(f_->Write(h.data(), h.size()));
  MQKV_RETURN_IF_ERROR(f_->Write(prefix.data(), prefix.size()));
  MQKV_RETURN_IF_ERROR(f_->Write(body, body_bytes));
  entries_.push_back(std::move(e));
  return Status::OK();
}

Status Writer::Finish() {
  const uint64_t cd_off = f_->position();
  std::string cd;
  for (const Entry& e : entries_) {
    const bool big_size = e.size >= 0xFFFFFFFFull, big_off = e.offset >= 0xFFFFFFFFull;
    const uint16_t xlen = static_cast<uint16_t>((big_size ? 16 : 0) + (big_off ? 8 : 0));
    Put32(&cd, kSigCentral);
    Put16(&cd, (3 << 8) | 45);  // made by: Unix, 4.5
    Put16(&cd, big_size || big_off ? 45 : 20);
    Put16(&cd, 0);
    Put16(&cd, 0);
    Put16(&cd, 0);
    Put16(&cd, (0 << 9) | (1 << 5) | 1);
    Put32(&cd, e.crc);
    Put32(&cd, big_size ? 0xFFFFFFFFu : static_cast<uint32_t>(e.size));
    Put32(&cd, big_size ? 0xFFFFFFFFu : static_cast<uint32_t>(e.size));
    Put16(&cd, static_cast<uint16_t>(e.name.size()));
    Put16(&cd, xlen ? xlen + 4 : 0);
    Put16(&cd, 0);  // comment
    Put16(&cd, 0);  // disk
    Put16(&cd, 0);  // internal attributes
    Put32(&cd, 0644u << 16);  // external attributes: -rw-r--r--
    Put32(&cd, big_off ? 0xFFFFFFFFu : static_cast<uint32_t>(e.offset));
    cd += e.name;
    if (xlen) {
      Put16(&cd, 0x0001);
      Put16(&cd, xlen);
      if (big_size) Put64(&cd, e.size), Put64(&cd, e.size);
      if (big_off) Put64(&cd, e.offset);
    }
  }
  const uint64_t n = entries_.size(), cd_size = cd.size();
  const bool z64 = n >= 0xFFFF || cd_size >= 0xFFFFFFFFull || cd_off >= 0xFFFFFFFFull;
  if (z64) {
    const uint64_t rec = cd_off + cd_size;
    Put32(&cd, kSigEnd64);
    Put64(&cd, 44);
    Put16(&cd, (3 << 8) | 45);
    Put16(&cd, 45);
    Put32(&cd, 0);
    Put32(&cd, 0);
    Put64(&cd, n);
    Put64(&cd, n);
    Put64(&cd, cd_size);
    Put64(&cd, cd_off);
    Put32(&cd, kSigLocator64);
    Put32(&cd, 0);
    Put64(&cd, rec);
    Put32(&cd, 1);
  }
  Put32(&cd, kSigEnd);
  Put16(&cd, 0);
  Put16(&cd, 0);
  Put16(&cd, z64 ? 0xFFFF : static_cast<uint16_t>(n));
  Put16(&cd, z64 ? 0xFFFF : static_cast<uint16_t>(n));
  Put32(&cd, z64 ? 0xFFFFFFFFu : static_cast<uint32_t>(cd_size));
  Put32(&cd, z64 ? 0xFFFFFFFFu : static_cast<uint32_t>(cd_off));
  Put16(&cd, 0);
  return f_->Write(cd.data(), cd.size());
}

}  // namespace mqkv::adapters::zip
