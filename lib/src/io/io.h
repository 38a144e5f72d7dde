// File plumbing for the container and the adapters: whole inputs (a read-only mapping, or a
// downloaded remote object), the ByteSource implementations (mqkv/io.h), and outputs that appear
// whole or not at all (a local temp + rename, or an S3 multipart upload completed at the end).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mqkv/io.h"
#include "mqkv/status.h"

namespace mqkv::io {

// A whole input in memory: a local file mapped read-only, or a URL's object fetched in full
// (formats other than mqkv are parsed from all of their bytes).
class WholeFile {
 public:
  static Result<std::unique_ptr<WholeFile>> Open(const std::string& path_or_url);
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  // ByteSource::Release for bytes [p, p + n) of data() (a mapped file drops those pages).
  void Release(const uint8_t* p, uint64_t n) const {
    if (p >= data_ && p <= data_ + size_ && bytes_.data == nullptr) source_->Release(uint64_t(p - data_), n);
  }

 private:
  WholeFile() = default;
  std::shared_ptr<ByteSource> source_;
  ByteRange bytes_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// OK when [offset, offset + n) lies inside a source of `size` bytes, else the IoError every
// ByteSource gives for a read past its end.
Status CheckReadRange(const std::string& name, uint64_t offset, uint64_t n, uint64_t size);

// The local ByteSource: a read-only mapping of a regular file.
Result<std::shared_ptr<ByteSource>> OpenLocalSource(const std::string& path);

// Removes "<dir>/.<name>.tmp-XXXXXX" files of target `path` left by writers that died (their
// flock is gone). Called by AtomicFile::Commit() after a successful rename.
void RemoveStaleTemps(const std::string& path);

// An output that appears under its name whole or not at all: nothing is visible before Commit(),
// and destroying it uncommitted leaves the previous contents (or nothing) in place.
class OutputFile {
 public:
  virtual ~OutputFile() = default;
  virtual Status Write(const void* data, uint64_t n) = 0;
  Status WriteZeros(uint64_t n);
  // n zero bytes that a local file leaves as a hole (sparse); others write them.
  virtual Status Skip(uint64_t n) { return WriteZeros(n); }
  // Overwrites n bytes at `offset` of what was already written (offset + n <= position()), e.g.
  // a file header field known only at the end. Outputs that stream (S3) allow it only within
  // the first 5 MiB, which they hold back until Commit().
  virtual Status WriteAt(uint64_t offset, const void* data, uint64_t n) = 0;
  uint64_t position() const { return pos_; }
  // Reserves the next n bytes (position() advances by n) for WriteReserved, which fills them in
  // any order and from several threads at once. Returns false, changing nothing, when this output
  // cannot (an S3 upload streams its parts in order): the caller then writes in order.
  virtual Result<bool> Reserve(uint64_t) { return false; }
  // n bytes at `offset` inside a range Reserve returned true for; safe to call concurrently for
  // disjoint ranges (and with nothing else on this output).
  virtual Status WriteReserved(uint64_t, const void*, uint64_t) { return Internal("WriteReserved without Reserve").WithFile(path_); }
  virtual Status Commit() = 0;
  const std::string& path() const { return path_; }

 protected:
  std::string path_;
  uint64_t pos_ = 0;
};

// A local path or an s3:// URL (http(s):// outputs are refused: plain HTTP has no atomic upload).
Result<std::unique_ptr<OutputFile>> CreateOutput(const std::string& path_or_url, bool fsync);

// Collects the bytes in memory and moves them into *dst on Commit() (an uncommitted output
// leaves *dst as it was). `name` stands for a path in error messages.
class MemoryOutput : public OutputFile {
 public:
  MemoryOutput(std::vector<uint8_t>* dst, std::string name) : dst_(dst) { path_ = std::move(name); }
  Status Write(const void* data, uint64_t n) override;
  Status WriteAt(uint64_t offset, const void* data, uint64_t n) override;
  Result<bool> Reserve(uint64_t n) override;
  Status WriteReserved(uint64_t offset, const void* data, uint64_t n) override;
  Status Commit() override;

 private:
  std::vector<uint8_t>* dst_;
  std::vector<uint8_t> buf_;
};

// Writes to "<dir>/.<name>.tmp-XXXXXX" (holding an exclusive flock on it while alive) and renames
// onto the target on Commit(), then removes stale temporary files of the same target.
class AtomicFile : public OutputFile {
 public:
  static Result<std::unique_ptr<AtomicFile>> Create(const std::string& path, bool fsync);
  ~AtomicFile() override;  // removes the temporary file unless committed
  Status Write(const void* data, uint64_t n) override;
  Status WriteAt(uint64_t offset, const void* data, uint64_t n) override;
  Status Skip(uint64_t n) override;
  Result<bool> Reserve(uint64_t n) override;  // a hole of n bytes (ftruncate), filled by pwrite
  Status WriteReserved(uint64_t offset, const void* data, uint64_t n) override;
  Status Commit() override;
  const std::string& temp_path() const { return tmp_; }

 private:
  AtomicFile() = default;
  Status Flush();
  Status PwriteAll(uint64_t offset, const char* p, uint64_t n);
  Status WriteAll(const char* p, uint64_t n);
  std::string tmp_;
  int fd_ = -1;
  bool fsync_ = true;
  bool committed_ = false;
  std::string buf_;
};

}  // namespace mqkv::io
