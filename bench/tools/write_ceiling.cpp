// How fast this machine writes a file into a directory at all (no mqkv code): the ceiling for any
// converter whose output goes there. 512 MiB, fsync at the end, four ways:
//   1 thread,  write(2) of 8 MiB buffers filled by memset (what a tensor-at-a-time writer does)
//   1 thread,  pwrite(2) of 256 KiB buffers (the buffer stays in the core's cache)
//   2 threads, pwrite(2) of 256 KiB buffers at disjoint offsets (one inode lock: the copies serialise)
//   2 threads, a shared mapping per 8 MiB, filled in place (no copy; page faults allocate the pages)
//
//   g++ -O2 -pthread -o /tmp/write_ceiling bench/tools/write_ceiling.cpp && /tmp/write_ceiling [/dev/shm] [rounds]
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {
constexpr size_t kTotal = size_t(512) << 20, kTensor = size_t(8) << 20, kChunk = size_t(256) << 10;

double Now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void Check(bool ok, const char* what) {
  if (!ok) {
    std::perror(what);
    std::exit(1);
  }
}

double Run(const std::string& path, int mode) {
  ::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0644);
  Check(fd >= 0, "open");
  const double t0 = Now();
  if (mode == 0) {
    std::vector<uint8_t> b(kTensor);
    for (size_t off = 0; off < kTotal; off += kTensor) {
      std::memset(b.data(), int(off >> 20), kTensor);
      Check(::write(fd, b.data(), kTensor) == ssize_t(kTensor), "write");
    }
  } else if (mode == 1 || mode == 2) {
    Check(::ftruncate(fd, kTotal) == 0, "ftruncate");
    const int threads = mode == 1 ? 1 : 2;
    auto work = [&](int t) {
      std::vector<uint8_t> b(kChunk);
      for (size_t off = t * kTensor; off < kTotal; off += threads * kTensor)
        for (size_t c = 0; c < kTensor; c += kChunk) {
          std::memset(b.data(), t + 1, kChunk);
          Check(::pwrite(fd, b.data(), kChunk, off_t(off + c)) == ssize_t(kChunk), "pwrite");
        }
    };
    std::thread a(work, 0);
    if (threads == 2) work(1);
    a.join();
  } else {
    Check(::posix_fallocate(fd, 0, kTotal) == 0, "posix_fallocate");
    auto work = [&](int t) {
      for (size_t off = t * kTensor; off < kTotal; off += 2 * kTensor) {
        void* p = ::mmap(nullptr, kTensor, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(off));
        Check(p != MAP_FAILED, "mmap");
        std::memset(p, t + 1, kTensor);
        ::munmap(p, kTensor);
      }
    };
    std::thread a(work, 0);
    work(1);
    a.join();
  }
  Check(::fsync(fd) == 0, "fsync");
  const double t = Now() - t0;
  ::close(fd);
  ::unlink(path.c_str());
  return t;
}
}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/dev/shm";
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  const char* names[] = {"1 thread, write 8 MiB", "1 thread, pwrite 256 KiB", "2 threads, pwrite 256 KiB", "2 threads, mmap 8 MiB"};
  std::vector<std::vector<double>> t(4);
  for (int r = 0; r < rounds; ++r)
    for (int m = 0; m < 4; ++m) t[m].push_back(Run(dir + "/mqkv-write-ceiling", m));  // alternating
  std::printf("| 512 MiB into %s, fsync | median | GB/s | best |\n|---|---:|---:|---:|\n", dir.c_str());
  for (int m = 0; m < 4; ++m) {
    std::sort(t[m].begin(), t[m].end());
    const double med = t[m][t[m].size() / 2];
    std::printf("| %s | %.3f s | %.2f | %.2f |\n", names[m], med, kTotal / 1e9 / med, kTotal / 1e9 / t[m][0]);
  }
}
