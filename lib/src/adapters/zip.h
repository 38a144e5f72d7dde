// The zip subset npz needs (spec/INTEROP.md, "npz"): reading stored and deflated members with
// ZIP64, CRC-32 checked and every size bounded by the file; writing stored members (so they stay
// mmap-able), ZIP64 where needed.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/io.h"
#include "mqkv/status.h"

namespace mqkv::adapters::zip {

// One central-directory entry.
struct Member {
  std::string name;
  uint16_t method = 0, flags = 0;
  uint32_t crc = 0;
  uint64_t csize = 0, usize = 0, local = 0;
};

// The central directory of the n-byte zip image d (ZIP64 end records followed where present).
Result<std::vector<Member>> ReadCentralDirectory(const uint8_t* d, uint64_t n);

// A member's bytes: a view into the mapping when stored, else inflated into `owned`.
Result<std::pair<const uint8_t*, uint64_t>> MemberBytes(const uint8_t* d, uint64_t n, const Member& m, std::vector<uint8_t>* owned);

// Writes stored members to f, then the central directory on Finish().
class Writer {
 public:
  explicit Writer(io::OutputFile* f) : f_(f) {}
  // Member bytes = prefix followed by body.
  Status Add(const std::string& name, const std::string& prefix, const uint8_t* body, uint64_t body_bytes);
  Status Finish();

 private:
  struct Entry {
    std::string name;
    uint64_t size = 0, offset = 0;
    uint32_t crc = 0;
  };
  io::OutputFile* f_;
  std::vector<Entry> entries_;
};

}  // namespace mqkv::adapters::zip
