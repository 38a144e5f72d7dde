// Numbers as text, independent of the C locale (spec/CODECS.md, "Canonical spec strings";
// spec/INTEROP.md): std::to_chars / std::from_chars, never printf / strtof, so a program that
// embeds libmqkv and calls setlocale(LC_ALL, "de_DE.UTF-8") still writes and reads "1.85".
#pragma once

#include <charconv>
#include <string>
#include <string_view>
#include <system_error>

namespace mqkv::text {

// printf("%.*g", precision, f) in the C locale: the general format with `precision` significant
// digits (exponent form when the exponent is < -4 or >= precision), trailing zeros removed.
inline std::string GeneralFloat(float f, int precision) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::general, precision);
  return std::string(buf, r.ptr);
}

// The canonical decimal of a float: GeneralFloat(f, P) for the smallest P in 1..9 that parses
// back (ParseFloat) to exactly f. Every finite float round-trips at P = 9.
inline bool ParseFloat(std::string_view s, float* out);
inline std::string ShortestFloat(float f) {
  for (int p = 1; p < 9; ++p) {
    std::string s = GeneralFloat(f, p);
    float back = 0;
    if (ParseFloat(s, &back) && back == f) return s;
  }
  return GeneralFloat(f, 9);
}

// A decimal number, all of `s`: [-]digits[.digits][(e|E)[+|-]digits] (also ".5", "5."), rounded to
// nearest float. No leading '+', no spaces, no hex; "inf" and "nan" parse (callers that need a
// finite value check it). False when `s` is not exactly one such number.
inline bool ParseFloat(std::string_view s, float* out) {
  if (s.empty()) return false;
  float v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::general);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return false;
  *out = v;
  return true;
}

}  // namespace mqkv::text
