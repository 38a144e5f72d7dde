// Errors are values: every fallible call returns Status or Result<T>.
// A Status carries a code, a reason, and where known the file and byte offset it concerns.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace mqkv {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,  // caller error (bad option, bad codec spec string, bad shape)
  kFormatError = 2,      // the input file is malformed or inconsistent
  kChecksumMismatch = 3, // stored checksum does not match the bytes
  kUnsupported = 4,      // well-formed but uses something this build cannot handle
  kIoError = 5,          // open/read/write/rename/fsync failed
  kOutOfRange = 6,       // request outside the data (token range, layer)
  kInternal = 7,
};

const char* StatusCodeName(StatusCode c);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  const std::string& file() const { return file_; }
  std::optional<uint64_t> offset() const { return offset_; }

  // Attach context (no-ops on OK). The first file / offset attached wins: the innermost
  // code knows best where the problem is.
  Status& WithFile(const std::string& file) {
    if (!ok() && file_.empty()) file_ = file;
    return *this;
  }
  Status& WithOffset(uint64_t off) {
    if (!ok() && !offset_) offset_ = off;
    return *this;
  }
  Status& Prepend(const std::string& context) {
    if (!ok()) message_ = context + ": " + message_;
    return *this;
  }

  // "FILE: at byte OFF: REASON" (file and offset omitted when unknown).
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  std::string file_;
  std::optional<uint64_t> offset_;
};

inline Status InvalidArgument(std::string m) { return Status(StatusCode::kInvalidArgument, std::move(m)); }
inline Status FormatError(std::string m) { return Status(StatusCode::kFormatError, std::move(m)); }
inline Status FormatErrorAt(uint64_t off, std::string m) {
  Status s(StatusCode::kFormatError, std::move(m));
  s.WithOffset(off);
  return s;
}
inline Status ChecksumMismatch(std::string m) { return Status(StatusCode::kChecksumMismatch, std::move(m)); }
inline Status Unsupported(std::string m) { return Status(StatusCode::kUnsupported, std::move(m)); }
inline Status IoError(std::string m) { return Status(StatusCode::kIoError, std::move(m)); }
inline Status OutOfRange(std::string m) { return Status(StatusCode::kOutOfRange, std::move(m)); }
inline Status Internal(std::string m) { return Status(StatusCode::kInternal, std::move(m)); }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                       // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {                 // NOLINT
    if (std::get<Status>(v_).ok()) v_ = Status(StatusCode::kInternal, "Result built from OK status");
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  Status& mutable_status() { return std::get<Status>(v_); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace mqkv

#define MQKV_CONCAT_INNER(a, b) a##b
#define MQKV_CONCAT(a, b) MQKV_CONCAT_INNER(a, b)

#define MQKV_RETURN_IF_ERROR(expr)        \
  do {                                    \
    ::mqkv::Status _st = (expr);          \
    if (!_st.ok()) return _st;            \
  } while (0)

#define MQKV_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

#define MQKV_ASSIGN_OR_RETURN(lhs, expr) \
  MQKV_ASSIGN_OR_RETURN_IMPL(MQKV_CONCAT(_res_, __LINE__), lhs, expr)

// Return a FormatError at `off` when `cond` holds.
#define MQKV_FORMAT_CHECK(cond, off, msg)                       \
  do {                                                          \
    if (!(cond)) return ::mqkv::FormatErrorAt((off), (msg));    \
  } while (0)
