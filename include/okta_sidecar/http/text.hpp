#pragma once
// ASCII helpers for HTTP field syntax (RFC 9110 §5). Locale-free on purpose: header names and
// tokens are ASCII, and std::tolower would treat obs-text bytes by the C locale's rules.
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace okta_sidecar::http {

// One header field as the parser split it: (name, value). No ownership.
using header_view = std::pair<std::string_view, std::string_view>;

constexpr char ascii_lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
constexpr bool is_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr bool is_hex_digit(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
// Character classes of the request-line and field syntax, one table lookup each: these run over
// every byte of every request's target and header names.
namespace char_class {
inline constexpr unsigned char tchar = 1;  // RFC 9110 §5.6.2: method, header name, transfer-coding
inline constexpr unsigned char host = 2;   // reg-name characters we accept in a host (target.cpp)
inline constexpr unsigned char path = 4;   // visible ASCII except '#': origin-form path and query
inline constexpr auto table = [] {
  std::array<unsigned char, 256> t{};
  for (int c = 0; c < 256; ++c) {
    const char ch = static_cast<char>(c);
    const bool alnum = is_digit(ch) || is_alpha(ch);
    constexpr std::string_view tchar_extra = "!#$%&'*+-.^_`|~";
    if (alnum || tchar_extra.find(ch) != std::string_view::npos) t[c] |= tchar;
    if (alnum || ch == '-' || ch == '.' || ch == '_') t[c] |= host;
    if (c > 0x20 && c < 0x7f && ch != '#') t[c] |= path;
  }
  return t;
}();
constexpr bool has(char c, unsigned char cls) noexcept {
  return (table[static_cast<unsigned char>(c)] & cls) != 0;
}
}  // namespace char_class

constexpr bool is_tchar(char c) noexcept { return char_class::has(c, char_class::tchar); }
constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

// Eight bytes at a time (SWAR): field names, tokens and field values of every message go through
// the functions below; a byte at a time they cost about 7 % of a proxied request's instructions.
namespace swar {
inline constexpr std::uint64_t ones = 0x0101010101010101;
inline constexpr std::uint64_t highs = 0x80 * ones;
inline std::uint64_t load(const char* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
// The eight bytes with their ASCII capitals made small: a capital is a byte whose high bit is
// clear and whose low seven bits are 'A'..'Z'; adding 0x20 is setting bit 5 (capital >> 2).
constexpr std::uint64_t ascii_lower(std::uint64_t x) noexcept {
  const std::uint64_t low7 = x & (0x7f * ones);
  const std::uint64_t from_a = low7 + (0x80 - 'A') * ones;      // high bit set: >= 'A'
  const std::uint64_t past_z = low7 + (0x80 - 'Z' - 1) * ones;  // high bit set: > 'Z'
  return x | ((from_a & ~past_z & ~x & highs) >> 2);
}
// Whether some byte may be a control byte (< 0x20) or DEL: exact when it says no.
constexpr bool maybe_ctl(std::uint64_t x) noexcept {
  const std::uint64_t del = x ^ (0x7f * ones);
  return ((((x - 0x20 * ones) & ~x) | ((del - ones) & ~del)) & highs) != 0;
}
// Whether some byte may be outside char_class::path (below 0x21, DEL, 0x80 and above, '#') or a
// '%' (whose two hex digits are checked byte by byte): exact when it says no.
constexpr bool maybe_not_plain_path(std::uint64_t x) noexcept {
  const auto has_zero = [](std::uint64_t v) { return (v - ones) & ~v & highs; };
  return (((((x - 0x21 * ones) & ~x) | x) & highs) | has_zero(x ^ (0x7f * ones)) |
          has_zero(x ^ ('#' * ones)) | has_zero(x ^ ('%' * ones))) != 0;
}
// Whether some byte may be other than a letter, a digit or '-' (the bytes of nearly every field
// name): exact when it says no. Each byte's test is its own (no carry crosses bytes).
constexpr bool maybe_not_name(std::uint64_t x) noexcept {
  const std::uint64_t low7 = x & (0x7f * ones);
  const auto in = [](std::uint64_t v, char lo, char hi) {  // v's bytes below 0x80: lo <= byte <= hi
    return (v + (0x80 - lo) * ones) & ~(v + (0x7f - hi) * ones);
  };
  const std::uint64_t dash = low7 ^ ('-' * ones);
  const std::uint64_t is_dash = ~(((dash & (0x7f * ones)) + 0x7f * ones) | dash);
  const std::uint64_t ok = in(low7 | (0x20 * ones), 'a', 'z') | in(low7, '0', '9') | is_dash;
  return (ok & ~x & highs) != highs;
}
}  // namespace swar

// ASCII case-insensitive equality.
inline bool iequals(std::string_view a, std::string_view b) noexcept {
  const std::size_t n = a.size();
  if (n != b.size()) return false;
  const char* p = a.data();
  const char* q = b.data();
  if (n < 8) {
    for (std::size_t i = 0; i < n; ++i) {
      if (ascii_lower(p[i]) != ascii_lower(q[i])) return false;
    }
    return true;
  }
  const auto same8 = [](const char* x, const char* y) {
    const std::uint64_t u = swar::load(x), v = swar::load(y);
    return u == v || swar::ascii_lower(u) == swar::ascii_lower(v);
  };
  for (std::size_t i = 0; i + 8 < n; i += 8) {
    if (!same8(p + i, q + i)) return false;
  }
  return same8(p + n - 8, q + n - 8);  // the last eight, overlapping what was compared
}
// Field-value bytes (RFC 9110 §5.5): HTAB, SP, VCHAR and obs-text; no other control byte, so
// no CR or LF either.
inline bool is_field_value(std::string_view s) noexcept {
  std::size_t i = 0;
  if (s.size() >= 8) {
    while (i + 8 <= s.size() && !swar::maybe_ctl(swar::load(s.data() + i))) i += 8;
    // The last eight, overlapping what passed: no byte-wise tail.
    if (i + 8 > s.size() && !swar::maybe_ctl(swar::load(s.data() + s.size() - 8))) return true;
  }
  for (; i < s.size(); ++i) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u < 0x20 ? u != '\t' : u == 0x7f) return false;
  }
  return true;
}
bool istarts_with(std::string_view text, std::string_view prefix) noexcept;
std::string to_lower(std::string_view s);
// 1*tchar. Inline: every field name of every message goes through it; those of letters,
// digits and '-' (nearly all) eight bytes at a time.
inline bool is_token(std::string_view s) noexcept {
  const std::size_t n = s.size();
  if (n >= 8) {
    std::size_t i = 0;
    while (i + 8 < n && !swar::maybe_not_name(swar::load(s.data() + i))) i += 8;
    if (i + 8 >= n && !swar::maybe_not_name(swar::load(s.data() + n - 8))) return true;
  }
  for (const char c : s) {
    if (!is_tchar(c)) return false;
  }
  return n != 0;
}
constexpr std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}
// Elements of a comma-separated list field value (RFC 9110 §5.6.1), OWS trimmed. Empty
// elements are kept so strict callers can reject them.
std::vector<std::string_view> split_list(std::string_view value);
// The same without allocating, and without the empty elements: f(element) for each.
template <class F>
void for_each_element(std::string_view list, F&& f) {
  while (!list.empty()) {
    const auto comma = list.find(',');
    const auto element = trim_ows(list.substr(0, comma));
    if (!element.empty()) f(element);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

}  // namespace okta_sidecar::http
