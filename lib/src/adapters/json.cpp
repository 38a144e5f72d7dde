#include "json.h"

#include <cmath>
#include <cstdio>

namespace mqkv::json {
namespace {

class Parser {
 public:
  explicit Parser(std::string_view t) : t_(t) {}

  Result<Value> Document() {
    Value v;
    SkipWs();
    MQKV_RETURN_IF_ERROR(ParseValue(&v, 0));
    SkipWs();
    if (p_ != t_.size()) return Err("unexpected data after the JSON value");
    return v;
  }

 private:
  Status Err(const std::string& m) const { return FormatErrorAt(p_, "JSON: " + m); }
  void SkipWs() {
    while (p_ < t_.size() && (t_[p_] == ' ' || t_[p_] == '\t' || t_[p_] == '\n' || t_[p_] == '\r')) ++p_;
  }
  bool Eat(char c) {
    if (p_ < t_.size() && t_[p_] == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool Literal(std::string_view w) {
    if (t_.substr(p_, w.size()) != w) return false;
    p_ += w.size();
    return true;
  }

  Status ParseValue(Value* v, int depth) {
    if (depth > kMaxJsonDepth) return Err("nesting deeper than " + std::to_string(kMaxJsonDepth));
    if (p_ >= t_.size()) return Err("unexpected end of input");
    const char c = t_[p_];
    if (c == '{') return ParseObject(v, depth);
    if (c == '[') return ParseArray(v, depth);
    if (c == '"') {
      v->type = Value::Type::kString;
      return ParseString(&v->text);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber(v);
    if (Literal("true")) {
      v->type = Value::Type::kBool;
      v->boolean = true;
      return Status::OK();
    }
    if (Literal("false")) {
      v->type = Value::Type::kBool;
      return Status::OK();
    }
    if (Literal("null")) {
      v->type = Value::Type::kNull;
      return Status::OK();
    }
    return Err("unexpected character");
  }

  Status ParseObject(Value* v, int depth) {
    v->type = Value::Type::kObject;
    ++p_;
    SkipWs();
    if (Eat('}')) return Status::OK();
    for (;;) {
      SkipWs();
      if (p_ >= t_.size() || t_[p_] != '"') return Err("expected a string key");
      const size_t key_at = p_;
      std::string key;
      MQKV_RETURN_IF_ERROR(ParseString(&key));
      for (const auto& m : v->members)
        if (m.first == key) return FormatErrorAt(key_at, "JSON: duplicate key \"" + key + "\"");
      SkipWs();
      if (!Eat(':')) return Err("expected ':'");
      SkipWs();
      Value child;
      MQKV_RETURN_IF_ERROR(ParseValue(&child, depth + 1));
      v->members.push_back(Member{std::move(key), std::move(child)});
      SkipWs();
      if (Eat('}')) return Status::OK();
      if (!Eat(',')) return Err("expected ',' or '}'");
    }
  }

  Status ParseArray(Value* v, int depth) {
    v->type = Value::Type::kArray;
    ++p_;
    SkipWs();
    if (Eat(']')) return Status::OK();
    for (;;) {
      SkipWs();
      Value child;
      MQKV_RETURN_IF_ERROR(ParseValue(&child, depth + 1));
      v->items.push_back(std::move(child));
      SkipWs();
      if (Eat(']')) return Status::OK();
      if (!Eat(',')) return Err("expected ',' or ']'");
    }
  }

  Status ParseNumber(Value* v) {
    const size_t start = p_;
    auto digit = [&] { return p_ < t_.size() && t_[p_] >= '0' && t_[p_] <= '9'; };
    Eat('-');
    if (Eat('0')) {
      if (digit()) return Err("leading zero in number");
    } else {
      if (!digit()) return Err("bad number");
      while (digit()) ++p_;
    }
    if (Eat('.')) {
      if (!digit()) return Err("bad number fraction");
      while (digit()) ++p_;
    }
    if (p_ < t_.size() && (t_[p_] == 'e' || t_[p_] == 'E')) {
      ++p_;
      if (!Eat('+')) Eat('-');
      if (!digit()) return Err("bad number exponent");
      while (digit()) ++p_;
    }
    v->type = Value::Type::kNumber;
    v->text = std::string(t_.substr(start, p_ - start));
    return Status::OK();
  }

  Status Hex4(uint32_t* out) {
    if (p_ + 4 > t_.size()) return Err("truncated \\u escape");
    uint32_t x = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = t_[p_++];
      x <<= 4;
      if (c >= '0' && c <= '9') x |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') x |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') x |= uint32_t(c - 'A' + 10);
      else return Err("bad \\u escape");
    }
    *out = x;
    return Status::OK();
  }

  static void Utf8(uint32_t cp, std::string* o) {
    if (cp < 0x80) {
      *o += char(cp);
    } else if (cp < 0x800) {
      *o += char(0xC0 | (cp >> 6));
      *o += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *o += char(0xE0 | (cp >> 12));
      *o += char(0x80 | ((cp >> 6) & 0x3F));
      *o += char(0x80 | (cp & 0x3F));
    } else {
      *o += char(0xF0 | (cp >> 18));
      *o += char(0x80 | ((cp >> 12) & 0x3F));
      *o += char(0x80 | ((cp >> 6) & 0x3F));
      *o += char(0x80 | (cp & 0x3F));
    }
  }

  Status ParseString(std::string* out) {
    ++p_;  // opening quote
    const size_t raw_start = p_;
    for (;;) {
      if (p_ >= t_.size()) return Err("unterminated string");
      const unsigned char c = static_cast<unsigned char>(t_[p_]);
      if (c == '"') {
        ++p_;
        break;
      }
      if (c < 0x20) return Err("control character in string");
      if (c != '\\') {
        *out += char(c);
        ++p_;
        continue;
      }
      ++p_;
      if (p_ >= t_.size()) return Err("unterminated escape");
      const char e = t_[p_++];
      switch (e) {
        case '"': *out += '"'; break;
        case '\\': *out += '\\'; break;
        case '/': *out += '/'; break;
        case 'b': *out += '\b'; break;
        case 'f': *out += '\f'; break;
        case 'n': *out += '\n'; break;
        case 'r': *out += '\r'; break;
        case 't': *out += '\t'; break;
        case 'u': {
          uint32_t cp = 0;
          MQKV_RETURN_IF_ERROR(Hex4(&cp));
          if (cp >= 0xDC00 && cp <= 0xDFFF) return Err("unpaired low surrogate");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo = 0;
            if (!Literal("\\u")) return Err("unpaired high surrogate");
            MQKV_RETURN_IF_ERROR(Hex4(&lo));
            if (lo < 0xDC00 || lo > 0xDFFF) return Err("unpaired high surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          Utf8(cp, out);
          break;
        }
        default: return Err("bad escape");
      }
    }
    if (!ValidUtf8(*out)) return FormatErrorAt(raw_start, "JSON: string is not valid UTF-8");
    return Status::OK();
  }

  std::string_view t_;
  size_t p_ = 0;
};

}  // namespace

const Value* Value::Find(std::string_view key) const {
  for (const auto& m : members)
    if (m.first == key) return &m.second;
  return nullptr;
}

bool Value::AsUint64(uint64_t* out) const {
  if (type != Type::kNumber || text.empty() || text.size() > 20) return false;
  uint64_t x = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    if (__builtin_mul_overflow(x, 10u, &x) || __builtin_add_overflow(x, uint64_t(c - '0'), &x)) return false;
  }
  *out = x;
  return true;
}

Result<Value> Parse(std::string_view text) { return Parser(text).Document(); }

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int n;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) n = 1, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) n = 2, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) n = 3, cp = c & 0x07;
    else return false;
    if (i + static_cast<size_t>(n) >= s.size()) return false;  // continuation bytes missing
    for (int k = 1; k <= n; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    static constexpr uint32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

std::string Number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string Quote(std::string_view s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7F) {  // control characters and DEL as \u escapes
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else {
          o += char(c);
        }
    }
  }
  return o + "\"";
}

}  // namespace mqkv::json
