#include "io.h"


#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace mqkv::io {
namespace {

Status Errno(const std::string& what, const std::string& path) {
  Status s = IoError(what + ": " + std::strerror(errno));
  s.WithFile(path);
  return s;
}

std::string DirName(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

std::string BaseName(const std::string& path) {
  auto pos = path.find_last_of('/');
  return pos == std::string::npos ? path : path.substr(pos + 1);
}

constexpr size_t kBufBytes = 1 << 20;
constexpr size_t kTempSuffixChars = 6;  // mkostemp's XXXXXX

std::string TempPrefix(const std::string& path) {
  std::string p = ".";  // built with appends: gcc 12's -Wrestrict misfires on "." + s + "..."
  p += BaseName(path);
  p += ".tmp-";
  return p;
}

// True when `fd` and `path` name the same inode (the name was not replaced under us).
bool SameFile(int fd, const std::string& path) {
  struct stat a {}, b {};
  return ::fstat(fd, &a) == 0 && ::lstat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

}  // namespace

// Removes temporary files of `path` whose writer is gone (spec/FORMAT.md, "Writing").
// A live writer holds an exclusive flock(2) on its temporary file from creation to rename; the
// kernel drops the lock when the writer dies, even by SIGKILL. So a temporary file whose lock we
// can take belongs to a dead writer and is removed. Best effort: errors are ignored.
void RemoveStaleTemps(const std::string& path) {
  const std::string dir = DirName(path), prefix = TempPrefix(path);
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (const struct dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() != prefix.size() + kTempSuffixChars || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string full = dir + "/" + name;
    int fd = ::open(full.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ::flock(fd, LOCK_EX | LOCK_NB) == 0 && SameFile(fd, full))
      ::unlink(full.c_str());
    ::close(fd);
  }
  ::closedir(d);
}

namespace {

// A read-only mapping of a regular file (or caller memory when `mapped` is false).
class MappedSource final : public ByteSource {
 public:
  MappedSource(std::string name, const uint8_t* data, uint64_t size, bool mapped)
      : name_(std::move(name)), data_(data), size_(size), mapped_(mapped) {}
  ~MappedSource() override {
    if (mapped_ && size_ > 0) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  const std::string& name() const override { return name_; }
  uint64_t size() const override { return size_; }
  const uint8_t* data() const override { return data_; }
  Result<ByteRange> Read(uint64_t offset, uint64_t n) override {
    MQKV_RETURN_IF_ERROR(CheckReadRange(name_, offset, n, size_));
    return ByteRange{data_ + offset, n, nullptr};
  }
  void Release(uint64_t offset, uint64_t n) const override {
    if (!mapped_ || offset >= size_) return;
    n = std::min(n, size_ - offset);
    // Whole pages inside the range only (a neighbour's bytes on a shared page stay mapped). The
    // mapping is private and never written, so the pages come back from the file when touched.
    static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t lo = (offset + page - 1) / page * page, hi = (offset + n) / page * page;
    if (hi > lo) ::madvise(const_cast<uint8_t*>(data_) + lo, hi - lo, MADV_DONTNEED);
  }

 private:
  std::string name_;
  const uint8_t* data_;
  uint64_t size_;
  bool mapped_;
};

}  // namespace

Status CheckReadRange(const std::string& name, uint64_t offset, uint64_t n, uint64_t size) {
  if (offset <= size && n <= size - offset) return Status::OK();
  Status s = IoError("read of " + std::to_string(n) + " bytes at " + std::to_string(offset) + " past the end (" +
                     std::to_string(size) + " bytes)");
  s.WithFile(name);
  return s;
}

Result<std::shared_ptr<ByteSource>> OpenLocalSource(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open", path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    Status s = Errno("cannot stat", path);
    ::close(fd);
    return s;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    Status s = IoError("not a regular file");
    s.WithFile(path);
    return s;
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const uint8_t* data = nullptr;
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      Status s = Errno("cannot mmap", path);
      ::close(fd);
      return s;
    }
    data = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return std::shared_ptr<ByteSource>(std::make_shared<MappedSource>(path, data, size, true));
}

}  // namespace mqkv::io

namespace mqkv {

std::shared_ptr<ByteSource> MemorySource(const uint8_t* data, uint64_t size, const std::string& name) {
  return std::make_shared<io::MappedSource>(name, data, size, false);
}

}  // namespace mqkv

namespace mqkv::io {

Result<std::unique_ptr<WholeFile>> WholeFile::Open(const std::string& path_or_url) {
  std::unique_ptr<WholeFile> f(new WholeFile());
  MQKV_ASSIGN_OR_RETURN(f->source_, OpenSource(path_or_url));
  if (const uint8_t* d = f->source_->data()) {
    f->data_ = d;
    f->size_ = f->source_->size();
    return f;
  }
  MQKV_ASSIGN_OR_RETURN(f->bytes_, f->source_->Read(0, f->source_->size()));
  f->data_ = f->bytes_.data;
  f->size_ = f->bytes_.size;
  return f;
}

Status OutputFile::WriteZeros(uint64_t n) {
  static const char zeros[4096] = {};
  while (n > 0) {
    uint64_t k = n < sizeof(zeros) ? n : sizeof(zeros);
    MQKV_RETURN_IF_ERROR(Write(zeros, k));
    n -= k;
  }
  return Status::OK();
}

Result<std::unique_ptr<AtomicFile>> AtomicFile::Create(const std::string& path, bool fsync) {
  std::unique_ptr<AtomicFile> f(new AtomicFile());
  f->path_ = path;
  f->fsync_ = fsync;
  // Create the temporary file and lock it. A concurrent RemoveStaleTemps may take the lock and
  // unlink the name between mkostemp and flock; then the name no longer names our file: retry.
  for (int attempt = 0;; ++attempt) {
    std::string tmpl = DirName(path) + "/" + TempPrefix(path) + std::string(kTempSuffixChars, 'X');
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    int fd = ::mkostemp(buf.data(), O_CLOEXEC);
    if (fd < 0) return Errno("cannot create temporary file in " + DirName(path), path);
    const bool locked = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
    // No flock on this file system (ENOLCK, EOPNOTSUPP, ...): write unlocked; no cleaner can
    // take a lock here either, so nothing removes the file under us.
    const bool no_locks = !locked && errno != EWOULDBLOCK && errno != EINTR;
    if ((locked && SameFile(fd, buf.data())) || no_locks) {
      ::fchmod(fd, 0644);
      f->fd_ = fd;
      f->tmp_ = buf.data();
      break;
    }
    ::close(fd);
    if (attempt == 8) return IoError("cannot lock a temporary file in " + DirName(path)).WithFile(path);
  }
  f->buf_.reserve(kBufBytes);
  return f;
}

AtomicFile::~AtomicFile() {
  if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());  // unlink while still locked
  if (fd_ >= 0) ::close(fd_);
}

Status AtomicFile::WriteAll(const char* p, uint64_t size) {
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::write(fd_, p + done, static_cast<size_t>(std::min<uint64_t>(size - done, 1u << 30)));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write failed", path_);
    }
    done += static_cast<size_t>(n);
  }
  return Status::OK();
}

Status AtomicFile::Flush() {
  MQKV_RETURN_IF_ERROR(WriteAll(buf_.data(), buf_.size()));
  buf_.clear();
  return Status::OK();
}

Status AtomicFile::Write(const void* data, uint64_t n) {
  if (fd_ < 0) return Internal("write after commit");
  const char* p = static_cast<const char*>(data);
  if (buf_.size() + n > kBufBytes) {
    MQKV_RETURN_IF_ERROR(Flush());
    if (n >= kBufBytes) {  // large writes go straight from the caller's bytes (no copy)
      MQKV_RETURN_IF_ERROR(WriteAll(p, n));
      pos_ += n;
      return Status::OK();
    }
  }
  buf_.append(p, n);
  pos_ += n;
  return Status::OK();
}

Status AtomicFile::PwriteAll(uint64_t offset, const char* p, uint64_t n) {
  uint64_t done = 0;
  while (done < n) {
    ssize_t w = ::pwrite(fd_, p + done, static_cast<size_t>(std::min<uint64_t>(n - done, 1u << 30)), static_cast<off_t>(offset + done));
    if (w < 0) {
      if (errno == EINTR) continue;
      return Errno("write failed", path_);
    }
    done += static_cast<uint64_t>(w);
  }
  return Status::OK();
}

Status AtomicFile::WriteAt(uint64_t offset, const void* data, uint64_t n) {
  if (fd_ < 0) return Internal("write after commit");
  if (offset > pos_ || n > pos_ - offset) return Internal("WriteAt past the written end of the file");
  MQKV_RETURN_IF_ERROR(Flush());
  return PwriteAll(offset, static_cast<const char*>(data), n);
}

Result<bool> AtomicFile::Reserve(uint64_t n) {
  if (fd_ < 0) return Internal("write after commit");
  MQKV_RETURN_IF_ERROR(Flush());
  if (::ftruncate(fd_, static_cast<off_t>(pos_ + n)) != 0) return Errno("cannot extend the file", path_);
  if (::lseek(fd_, static_cast<off_t>(pos_ + n), SEEK_SET) < 0) return Errno("seek failed", path_);
  pos_ += n;
  return true;
}

Status AtomicFile::WriteReserved(uint64_t offset, const void* data, uint64_t n) {
  if (fd_ < 0) return Internal("write after commit");
  if (offset > pos_ || n > pos_ - offset) return Internal("WriteReserved past the reserved end of the file");
  return PwriteAll(offset, static_cast<const char*>(data), n);
}

Status AtomicFile::Skip(uint64_t n) {
  if (fd_ < 0) return Internal("write after commit");
  MQKV_RETURN_IF_ERROR(Flush());
  if (::lseek(fd_, static_cast<off_t>(n), SEEK_CUR) < 0) return Errno("seek failed", path_);
  pos_ += n;
  // The hole becomes part of the file only once something is written after it; a final
  // ftruncate would be needed for a trailing hole, which the container never has (tail last).
  return Status::OK();
}

Status AtomicFile::Commit() {
  MQKV_RETURN_IF_ERROR(Flush());
  if (fsync_ && ::fsync(fd_) != 0) return Errno("fsync failed", path_);
  // Rename while still holding the lock (the fd), so no cleaner can take the file for stale.
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) return Errno("cannot rename temporary file onto target", path_);
  committed_ = true;
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) return Errno("close failed", path_);
  if (fsync_) {
    int dfd = ::open(DirName(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
  }
  RemoveStaleTemps(path_);
  return Status::OK();
}

Status MemoryOutput::Write(const void* data, uint64_t n) {
  if (n > buf_.max_size() - buf_.size()) return IoError("snapshot too large for memory").WithFile(path_);
  const auto* p = static_cast<const uint8_t*>(data);
  buf_.insert(buf_.end(), p, p + n);
  pos_ += n;
  return Status::OK();
}

Status MemoryOutput::WriteAt(uint64_t offset, const void* data, uint64_t n) {
  if (offset > buf_.size() || n > buf_.size() - offset) return Internal("WriteAt past the end of the output").WithFile(path_);
  std::memcpy(buf_.data() + offset, data, n);
  return Status::OK();
}

Result<bool> MemoryOutput::Reserve(uint64_t n) {
  if (n > buf_.max_size() - buf_.size()) return IoError("snapshot too large for memory").WithFile(path_);
  buf_.resize(buf_.size() + n);
  pos_ += n;
  return true;
}

Status MemoryOutput::WriteReserved(uint64_t offset, const void* data, uint64_t n) { return WriteAt(offset, data, n); }

Status MemoryOutput::Commit() {
  *dst_ = std::move(buf_);
  buf_.clear();
  return Status::OK();
}

}  // namespace mqkv::io
