#include "okta_sidecar/http/trace_context.hpp"

#include <algorithm>

namespace okta_sidecar::http {
namespace {

bool lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool all_zero(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}

}  // namespace

std::optional<std::string> trace_id_of(std::string_view v) {
  // Optional whitespace around a field value (RFC 9110 section 5.5) is not part of it.
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55 characters.
  constexpr std::size_t length = 55;
  if (v.size() < length || v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
  const auto version = v.substr(0, 2), trace = v.substr(3, 32), parent = v.substr(36, 16),
             flags = v.substr(53, 2);
  if (!lower_hex(version) || version == "ff" || !lower_hex(trace) || !lower_hex(parent) ||
      !lower_hex(flags)) {
    return std::nullopt;
  }
  if (all_zero(trace) || all_zero(parent)) return std::nullopt;
  if (v.size() > length && (version == "00" || v[length] != '-')) return std::nullopt;
  return std::string(trace);
}

}  // namespace okta_sidecar::http
