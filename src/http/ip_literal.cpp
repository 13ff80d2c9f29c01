#include "okta_sidecar/http/ip_literal.hpp"

#include <cstdio>
#include <vector>

#include "okta_sidecar/http/text.hpp"

namespace okta_sidecar::http {

namespace {

std::optional<std::uint8_t> parse_octet(std::string_view part) {
  if (part.empty() || part.size() > 3) return std::nullopt;
  if (part.size() > 1 && part[0] == '0') return std::nullopt;
  unsigned v = 0;
  for (char c : part) {
    if (!is_digit(c)) return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > 255) return std::nullopt;
  return static_cast<std::uint8_t>(v);
}

int hex_value(char c) {
  if (is_digit(c)) return c - '0';
  return ascii_lower(c) - 'a' + 10;
}

}  // namespace

std::optional<ip_literal> parse_ipv4(std::string_view text) {
  ip_literal out;
  for (int i = 0; i < 4; ++i) {
    const auto dot = text.find('.');
    if ((i < 3) == (dot == std::string_view::npos)) return std::nullopt;
    const auto octet = parse_octet(text.substr(0, dot));
    if (!octet) return std::nullopt;
    out.bytes[static_cast<std::size_t>(i)] = *octet;
    text = i < 3 ? text.substr(dot + 1) : std::string_view{};
  }
  return out;
}

std::optional<ip_literal> parse_ipv6(std::string_view text) {
  if (text.size() < 2 || text.size() > 45) return std::nullopt;
  std::vector<std::uint16_t> head, tail;
  bool seen_gap = false;
  std::optional<ip_literal> v4_tail;
  std::size_t i = 0;
  if (text.substr(0, 2) == "::") {
    seen_gap = true;
    i = 2;
  } else if (text[0] == ':') {
    return std::nullopt;
  }
  while (i < text.size()) {
    auto& groups = seen_gap ? tail : head;
    std::size_t j = i;
    while (j < text.size() && is_hex_digit(text[j])) ++j;
    if (j < text.size() && text[j] == '.') {
      // A trailing dotted quad stands for the last two groups.
      v4_tail = parse_ipv4(text.substr(i));
      if (!v4_tail) return std::nullopt;
      i = text.size();
      break;
    }
    if (j == i || j - i > 4) return std::nullopt;
    std::uint16_t g = 0;
    for (std::size_t k = i; k < j; ++k) g = static_cast<std::uint16_t>((g << 4) | hex_value(text[k]));
    groups.push_back(g);
    if (j == text.size()) {
      i = j;
      break;
    }
    if (text[j] != ':') return std::nullopt;
    if (j + 1 < text.size() && text[j + 1] == ':') {
      if (seen_gap) return std::nullopt;
      seen_gap = true;
      i = j + 2;
      continue;
    }
    if (j + 1 == text.size()) return std::nullopt;  // trailing single colon
    i = j + 1;
  }
  const std::size_t groups = head.size() + tail.size() + (v4_tail ? 2 : 0);
  if (seen_gap ? groups > 7 : groups != 8) return std::nullopt;
  ip_literal out;
  out.v6 = true;
  std::size_t pos = 0;
  for (auto g : head) {
    out.bytes[pos++] = static_cast<std::uint8_t>(g >> 8);
    out.bytes[pos++] = static_cast<std::uint8_t>(g & 0xff);
  }
  pos = 16 - 2 * tail.size() - (v4_tail ? 4 : 0);
  for (auto g : tail) {
    out.bytes[pos++] = static_cast<std::uint8_t>(g >> 8);
    out.bytes[pos++] = static_cast<std::uint8_t>(g & 0xff);
  }
  if (v4_tail) {
    for (std::size_t k = 0; k < 4; ++k) out.bytes[12 + k] = v4_tail->bytes[k];
  }
  return out;
}

std::optional<ip_literal> parse_ip(std::string_view text) {
  if (const auto pct = text.find('%'); pct != std::string_view::npos) {
    if (pct + 1 == text.size()) return std::nullopt;
    text = text.substr(0, pct);
    auto v6 = parse_ipv6(text);
    return v6;  // zone ids exist only for IPv6
  }
  if (text.find(':') != std::string_view::npos) return parse_ipv6(text);
  return parse_ipv4(text);
}

ip_literal unmap_v4(const ip_literal& address) {
  if (!address.v6) return address;
  for (std::size_t i = 0; i < 10; ++i)
    if (address.bytes[i] != 0) return address;
  if (address.bytes[10] != 0xff || address.bytes[11] != 0xff) return address;
  ip_literal v4;
  for (std::size_t i = 0; i < 4; ++i) v4.bytes[i] = address.bytes[12 + i];
  return v4;
}

std::string ip_literal::to_string() const {
  char buf[48];
  if (!v6) {
    std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", bytes[0], bytes[1], bytes[2], bytes[3]);
    return buf;
  }
  std::uint16_t g[8];
  for (std::size_t i = 0; i < 8; ++i)
    g[i] = static_cast<std::uint16_t>((bytes[2 * i] << 8) | bytes[2 * i + 1]);
  // RFC 5952 §4.2: compress the longest run (>= 2) of zero groups, the first one on ties.
  int best = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (g[i] != 0) {
      ++i;
      continue;
    }
    int j = i;
    while (j < 8 && g[j] == 0) ++j;
    if (j - i > best_len && j - i >= 2) {
      best = i;
      best_len = j - i;
    }
    i = j;
  }
  std::string out;
  for (int i = 0; i < 8; ++i) {
    if (i == best) {
      out += "::";
      i += best_len - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    std::snprintf(buf, sizeof buf, "%x", g[i]);
    out += buf;
  }
  return out;
}

}  // namespace okta_sidecar::http
