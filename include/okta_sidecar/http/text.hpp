#pragma once
// ASCII helpers for HTTP field syntax (RFC 9110 §5). Locale-free on purpose: header names and
// tokens are ASCII, and std::tolower would treat obs-text bytes by the C locale's rules.
#include <array>
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

bool iequals(std::string_view a, std::string_view b) noexcept;
bool istarts_with(std::string_view text, std::string_view prefix) noexcept;
std::string to_lower(std::string_view s);
// 1*tchar. Inline, a plain loop: every field name of every message goes through it.
constexpr bool is_token(std::string_view s) noexcept {
  for (const char c : s) {
    if (!is_tchar(c)) return false;
  }
  return !s.empty();
}
std::string_view trim_ows(std::string_view s) noexcept;
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
