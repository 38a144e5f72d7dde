// Where a snapshot's bytes come from: one small interface (read a range, size, identity) with three
// implementations: a local file (mmap), caller-owned memory, and a remote object (s3:// or
// http(s):// through libcurl, spec/REMOTE.md). The container reads only through it, so no codec or
// adapter knows where bytes come from.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mqkv/status.h"

namespace mqkv {

// Bytes [offset, offset + size) of a source. `data` stays valid while `owner` is held, and for
// sources without an owner (a mapping, caller memory) as long as the source lives.
struct ByteRange {
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  std::shared_ptr<const void> owner;
};

// What a source has done so far (all zero for local sources).
struct IoStats {
  uint64_t requests = 0;       // requests sent (a retried request counts each attempt)
  uint64_t bytes_fetched = 0;  // response body bytes received
  uint64_t retries = 0;        // attempts repeated after a 5xx, a timeout or a dropped connection
};

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // The path or URL, for messages (a URL's user:password part is never kept).
  virtual const std::string& name() const = 0;
  virtual uint64_t size() const = 0;
  // What pins the bytes: an HTTP ETag for a remote object (every request after the first is
  // conditional on it), "" for a local file or memory.
  virtual std::string identity() const { return {}; }
  // Exactly bytes [offset, offset + n), or an error naming the source (never a short read).
  // Safe to call from several threads at once.
  virtual Result<ByteRange> Read(uint64_t offset, uint64_t n) = 0;
  // The whole contents when they are addressable in memory (mapping, caller memory), else nullptr.
  virtual const uint8_t* data() const { return nullptr; }
  // True when Read(offset, n) needs no I/O.
  virtual bool Holds(uint64_t offset, uint64_t n) const {
    return data() != nullptr && offset <= size() && n <= size() - offset;
  }
  // A hint that these (offset, length) ranges, sorted by offset, are read soon. A remote source
  // fetches the ones it does not hold, merging ranges less than `max_gap` bytes apart into one
  // request; local sources ignore it.
  virtual Status Prefetch(const std::vector<std::pair<uint64_t, uint64_t>>& ranges, uint64_t max_gap = 0) {
    (void)ranges, (void)max_gap;
    return Status::OK();
  }
  virtual IoStats stats() const { return {}; }
  // A hint that [offset, offset + n) will not be read again soon: a file mapping drops those
  // pages from the process (they stay in the page cache), so reading a file larger than memory
  // in one pass does not grow the resident set. Others ignore it.
  virtual void Release(uint64_t offset, uint64_t n) const {
    (void)offset, (void)n;
  }
};

struct RemoteOptions {
  // Byte budget of a remote source's cache of fetched ranges (least recently used go first).
  uint64_t cache_bytes = 64ull << 20;
  // Size of the suffix range that Open fetches: the tail and, usually, the whole footer.
  uint64_t open_suffix_bytes = 64ull << 10;
  long connect_timeout_ms = 10000;
  // A transfer slower than 1 KiB/s for this long is abandoned (and retried).
  long low_speed_timeout_s = 30;
  int max_attempts = 4;        // per request, on 5xx, timeouts, dropped connections, short bodies
  long backoff_ms = 100;       // doubled after each failed attempt
};

// True for the URL schemes the library reads and writes: s3://, http://, https://.
bool IsUrl(const std::string& path_or_url);

// A local file (mapped read-only) or, for a URL, a remote object: one suffix-range request at open.
Result<std::shared_ptr<ByteSource>> OpenSource(const std::string& path_or_url, const RemoteOptions& remote = {});
// Caller-owned bytes (not copied; they must outlive the source).
std::shared_ptr<ByteSource> MemorySource(const uint8_t* data, uint64_t size, const std::string& name);

}  // namespace mqkv
