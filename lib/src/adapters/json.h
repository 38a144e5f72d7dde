// Internal: a small strict JSON (RFC 8259) parser and writer for safetensors headers.
// Strict means: one value and only whitespace around it, no trailing commas, no comments,
// no duplicate object keys, strings valid UTF-8 with escapes checked (surrogates paired),
// nesting at most kMaxJsonDepth. Numbers keep their source text so integers are read exactly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mqkv/status.h"

namespace mqkv::json {

inline constexpr int kMaxJsonDepth = 64;

struct Member;

struct Value {
  enum class Type : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  std::string text;  // kString: decoded UTF-8; kNumber: the literal as written
  std::vector<Value> items;
  std::vector<Member> members;  // in document order, keys unique (a pair of an incomplete type is
                                // ill-formed for some standard libraries; a vector of one is fine)

  const Value* Find(std::string_view key) const;
  // kNumber holding a non-negative integer literal (no fraction, no exponent) that fits.
  bool AsUint64(uint64_t* out) const;
};

struct Member {
  std::string first;
  Value second;
};

// Errors are FormatErrors at the byte offset (relative to `text`) where parsing stopped.
Result<Value> Parse(std::string_view text);

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool ValidUtf8(std::string_view s);
// A JSON string literal for valid UTF-8 `s` (quotes, backslash and control characters escaped).
std::string Quote(std::string_view s);
// A JSON number with 9 significant digits (%.9g); null for NaN and infinities.
std::string Number(double v);

}  // namespace mqkv::json
