#pragma once
// ASCII helpers for HTTP field syntax (RFC 9110 §5). Locale-free on purpose: header names and
// tokens are ASCII, and std::tolower would treat obs-text bytes by the C locale's rules.
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
// tchar (RFC 9110 §5.6.2): the characters of a method, header name or transfer-coding.
constexpr bool is_tchar(char c) noexcept {
  if (is_digit(c) || is_alpha(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}
constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

bool iequals(std::string_view a, std::string_view b) noexcept;
bool istarts_with(std::string_view text, std::string_view prefix) noexcept;
std::string to_lower(std::string_view s);
bool is_token(std::string_view s) noexcept;  // 1*tchar
std::string_view trim_ows(std::string_view s) noexcept;
// Elements of a comma-separated list field value (RFC 9110 §5.6.1), OWS trimmed. Empty
// elements are kept so strict callers can reject them.
std::vector<std::string_view> split_list(std::string_view value);

}  // namespace okta_sidecar::http
