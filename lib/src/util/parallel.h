// One parallel loop for the library's independent tasks (tensors to decode, ranges to fetch):
// workers claim task indices in order; after an error no new task is claimed.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

#include "mqkv/status.h"

namespace mqkv::util {

// Runs fn(task, worker) for task in [0, n) on min(workers, n) threads (0 workers: all cores;
// worker is 0..threads-1, e.g. to pick a per-thread resource). Returns the error of the lowest
// failed task, else OK.
template <typename Fn>
Status ParallelFor(size_t n, unsigned workers, Fn&& fn) {
  if (workers == 0) workers = std::max(1u, std::thread::hardware_concurrency());
  const size_t k = std::min<size_t>(workers, n);
  std::vector<Status> errors(n);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  auto work = [&](unsigned worker) {
    for (size_t i; !failed.load() && (i = next.fetch_add(1)) < n;) {
      errors[i] = fn(i, worker);
      if (!errors[i].ok()) failed = true;
    }
  };
  std::vector<std::thread> pool;
  for (unsigned w = 1; w < k; ++w) pool.emplace_back(work, w);
  if (k > 0) work(0);
  for (std::thread& t : pool) t.join();
  for (Status& e : errors) MQKV_RETURN_IF_ERROR(std::move(e));
  return Status::OK();
}

}  // namespace mqkv::util
