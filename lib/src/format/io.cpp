#include "io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

}  // namespace

Result<std::unique_ptr<MappedFile>> MappedFile::Open(const std::string& path) {
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
  std::unique_ptr<MappedFile> f(new MappedFile());
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      Status s = Errno("cannot mmap", path);
      ::close(fd);
      return s;
    }
    f->data_ = static_cast<const uint8_t*>(p);
    f->mapped_ = true;
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

Result<std::unique_ptr<AtomicFile>> AtomicFile::Create(const std::string& path, bool fsync) {
  std::unique_ptr<AtomicFile> f(new AtomicFile());
  f->path_ = path;
  f->fsync_ = fsync;
  std::string tmpl = DirName(path) + "/." + BaseName(path) + ".tmp-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  int fd = ::mkostemp(buf.data(), O_CLOEXEC);
  if (fd < 0) return Errno("cannot create temporary file in " + DirName(path), path);
  ::fchmod(fd, 0644);
  f->fd_ = fd;
  f->tmp_ = buf.data();
  f->buf_.reserve(kBufBytes);
  return f;
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
}

Status AtomicFile::Flush() {
  size_t done = 0;
  while (done < buf_.size()) {
    ssize_t n = ::write(fd_, buf_.data() + done, buf_.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write failed", path_);
    }
    done += static_cast<size_t>(n);
  }
  buf_.clear();
  return Status::OK();
}

Status AtomicFile::Write(const void* data, uint64_t n) {
  if (fd_ < 0) return Internal("write after commit");
  const char* p = static_cast<const char*>(data);
  if (buf_.size() + n > kBufBytes) {
    MQKV_RETURN_IF_ERROR(Flush());
    if (n >= kBufBytes) {
      buf_.assign(p, n);
      MQKV_RETURN_IF_ERROR(Flush());
      pos_ += n;
      return Status::OK();
    }
  }
  buf_.append(p, n);
  pos_ += n;
  return Status::OK();
}

Status AtomicFile::WriteZeros(uint64_t n) {
  static const char zeros[256] = {};
  while (n > 0) {
    uint64_t k = n < sizeof(zeros) ? n : sizeof(zeros);
    MQKV_RETURN_IF_ERROR(Write(zeros, k));
    n -= k;
  }
  return Status::OK();
}

Status AtomicFile::Commit() {
  MQKV_RETURN_IF_ERROR(Flush());
  if (fsync_ && ::fsync(fd_) != 0) return Errno("fsync failed", path_);
  if (::close(fd_) != 0) {
    fd_ = -1;
    return Errno("close failed", path_);
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) return Errno("cannot rename temporary file onto target", path_);
  committed_ = true;
  if (fsync_) {
    int dfd = ::open(DirName(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
  }
  return Status::OK();
}

}  // namespace mqkv::io
