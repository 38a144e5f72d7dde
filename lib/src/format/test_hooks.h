// Test hooks (internal; not installed, not API): what tests need to make files a correct writer
// never makes, such as a file declaring feature bits of a future format.
#pragma once

#include <cstdint>

#include "mqkv/snapshot.h"

namespace mqkv {

struct WriterTestHooks {
  // ORs `extra` into the file's required_features (tests of readers facing unknown features).
  static void SetRequiredFeatures(Writer& w, uint64_t extra);
};

}  // namespace mqkv
