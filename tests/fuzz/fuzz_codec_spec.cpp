// Fuzz target: the codec spec string parser. Property: whatever parses prints a canonical string
// that parses back to an equal spec.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mqkv/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto spec = mqkv::CodecSpec::Parse(text);
  if (!spec.ok()) return 0;
  const std::string canon = spec->ToString();
  auto again = mqkv::CodecSpec::Parse(canon);
  if (!again.ok() || !(*again == *spec)) std::abort();
  return 0;
}
