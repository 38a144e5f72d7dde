// Test hooks (internal; not installed, not API): what tests need to make files a correct writer
// never makes, such as a file declaring feature bits of a future format.
#pragma once

#include <cstdint>

#include "mqkv/snapshot.h"

namespace mqkv {

struct WriterTestHooks {
  // ORs `extra` into the file's required_features (tests of readers facing unknown features).
  static void SetRequiredFeatures(Writer& w, uint64_t extra);
  // Leaves a hole of `bytes` (a multiple of 64) before the next block: on a local file a sparse
  // one (lseek), so tests reach block offsets past 4 GiB without writing 4 GiB.
  static Status SkipBytes(Writer& w, uint64_t bytes);
};

}  // namespace mqkv
