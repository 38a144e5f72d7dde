// File plumbing for the container: a read-only mapping and an atomic (temp + rename) writer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "mqkv/status.h"

namespace mqkv::io {

class MappedFile {
 public:
  static Result<std::unique_ptr<MappedFile>> Open(const std::string& path);
  // A view of caller-owned bytes (not copied; must outlive the MappedFile).
  static std::unique_ptr<MappedFile> View(const uint8_t* data, uint64_t size);
  ~MappedFile();
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool mapped_ = false;
};

// Removes "<dir>/.<name>.tmp-XXXXXX" files of target `path` left by writers that died (their
// flock is gone). Called by AtomicFile::Commit() after a successful rename.
void RemoveStaleTemps(const std::string& path);

// Writes to "<dir>/.<name>.tmp-XXXXXX" (holding an exclusive flock on it while alive) and renames
// onto the target on Commit(), then removes stale temporary files of the same target.
class AtomicFile {
 public:
  static Result<std::unique_ptr<AtomicFile>> Create(const std::string& path, bool fsync);
  ~AtomicFile();  // removes the temporary file unless committed
  Status Write(const void* data, uint64_t n);
  Status WriteZeros(uint64_t n);
  // Overwrites n bytes at `offset` of what was already written (offset + n <= position()), e.g.
  // a file header field known only at the end. Flushes the buffer first.
  Status WriteAt(uint64_t offset, const void* data, uint64_t n);
  uint64_t position() const { return pos_; }
  Status Commit();
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }

 private:
  AtomicFile() = default;
  Status Flush();
  Status WriteAll(const char* p, uint64_t n);
  std::string path_, tmp_;
  int fd_ = -1;
  bool fsync_ = true;
  bool committed_ = false;
  uint64_t pos_ = 0;
  std::string buf_;
};

}  // namespace mqkv::io
