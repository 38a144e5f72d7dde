#include "mqkv/status.h"

namespace mqkv {

const char* StatusCodeName(StatusCode c) {
  switch (c) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kFormatError: return "format error";
    case StatusCode::kChecksumMismatch: return "checksum mismatch";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kIoError: return "I/O error";
    case StatusCode::kOutOfRange: return "out of range";
    case StatusCode::kInternal: return "internal error";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s;
  if (!file_.empty()) s += file_ + ": ";
  if (offset_) s += "at byte " + std::to_string(*offset_) + ": ";
  s += message_;
  return s;
}

}  // namespace mqkv
