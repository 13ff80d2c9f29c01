#include "okta_sidecar/policy/host_pattern.hpp"

#include <algorithm>

#include "okta_sidecar/http/ip_literal.hpp"
#include "okta_sidecar/http/target.hpp"
#include "okta_sidecar/http/text.hpp"

namespace okta_sidecar::policy {

namespace {

using http::ascii_lower;
using http::is_alpha;
using http::is_digit;
using http::is_hex_digit;

constexpr std::size_t max_host_length = 253;  // RFC 1035 §2.3.4 (without the root dot)

bool all_digits(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_digit); }

// "0x7f", "0X1": hex numbers inet_aton accepts as address parts.
bool is_hex_number(std::string_view s) {
  return s.size() > 2 && s[0] == '0' && ascii_lower(s[1]) == 'x' &&
         std::all_of(s.begin() + 2, s.end(), is_hex_digit);
}

bool valid_label(std::string_view label) {
  if (label.empty() || label.size() > 63) return false;
  if (label.front() == '-' || label.back() == '-') return false;
  return std::all_of(label.begin(), label.end(),
                     [](char c) { return is_alpha(c) || is_digit(c) || c == '-'; });
}

bool is_localhost_name(std::string_view h) {
  // RFC 6761 §6.3: localhost and every name under it resolve to loopback.
  if (h == "localhost" || (h.size() > 10 && h.substr(h.size() - 10) == ".localhost")) return true;
  return h == "localhost.localdomain" || h == "ip6-localhost" || h == "ip6-loopback";
}

std::string quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

}  // namespace

bool is_dns_name(std::string_view name) {
  if (name.empty() || name.size() > max_host_length) return false;
  for (;;) {
    const auto dot = name.find('.');
    const std::string_view label = name.substr(0, dot);
    if (!valid_label(label)) return false;
    if (dot == std::string_view::npos) return !all_digits(label);
    name.remove_prefix(dot + 1);
  }
}

std::optional<std::string> normalize_host(std::string_view host) {
  if (host.empty() || host.size() > max_host_length + 3) return std::nullopt;
  if (host.front() == '[') {
    if (host.back() != ']') return std::nullopt;
    const auto v6 = http::parse_ipv6(host.substr(1, host.size() - 2));
    if (!v6) return std::nullopt;
    return v6->to_string();
  }
  if (host.find(':') != std::string_view::npos) {
    const auto v6 = http::parse_ipv6(host);  // bare, as Asio prints it
    if (!v6) return std::nullopt;
    return v6->to_string();
  }
  std::string h = http::to_lower(host);
  if (h.back() == '.') h.pop_back();
  // A numeric or hex last label makes the whole name an IPv4 address to inet_aton and most
  // resolvers ("127.1", "2130706433", "0x7f.1"): accept only the canonical dotted quad.
  const auto dot = h.rfind('.');
  const std::string_view last = std::string_view(h).substr(dot == std::string::npos ? 0 : dot + 1);
  if (all_digits(last) || is_hex_number(last)) {
    const auto v4 = http::parse_ipv4(h);
    if (!v4) return std::nullopt;
    return v4->to_string();
  }
  if (!is_dns_name(h) || is_localhost_name(h)) return std::nullopt;
  return h;
}

bool host_pattern::matches_host(std::string_view normalized_host) const {
  const std::string_view h = normalized_host;
  if (!wildcard) return h == host;
  return h.size() > host.size() + 1 && h.substr(h.size() - host.size()) == host &&
         h[h.size() - host.size() - 1] == '.';
}

std::optional<host_pattern> parse_host_pattern(std::string_view text, std::string* why) {
  auto fail = [why](std::string message) -> std::optional<host_pattern> {
    if (why != nullptr) *why = std::move(message);
    return std::nullopt;
  };
  static constexpr std::string_view not_a_pattern = "is not a host name or *.suffix wildcard";
  if (text.empty()) return fail("is empty; expected a host name or *.suffix wildcard");
  if (text.find("://") != std::string_view::npos) {
    return fail("is a URL; expected only a host name, e.g. \"acme.okta.com\"");
  }
  host_pattern p;
  std::optional<std::string_view> port_text;
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return fail("has no closing ']' after the IPv6 address");
    const std::string_view inner = text.substr(1, close - 1);
    const auto v6 = http::parse_ipv6(inner);
    if (!v6) return fail("has " + quote(inner) + " in brackets, which is not an IPv6 address");
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return fail("has " + quote(rest) + " after ']'; expected :PORT");
      port_text = rest.substr(1);
    }
    p.host = v6->to_string();
  } else {
    const auto colon = text.find(':');
    if (colon != std::string_view::npos && text.find(':', colon + 1) != std::string_view::npos) {
      return fail("is not a host pattern; IPv6 addresses go in brackets, e.g. \"[::1]:443\"");
    }
    std::string_view host = text.substr(0, colon);
    if (colon != std::string_view::npos) port_text = text.substr(colon + 1);
    if (host.starts_with("*.")) {
      host.remove_prefix(2);
      p.wildcard = true;
      if (!host.empty() &&
          std::all_of(host.begin(), host.end(), [](char c) { return is_digit(c) || c == '.'; })) {
        return fail("is a wildcard over IP addresses; a *. wildcard needs a DNS suffix");
      }
    }
    const bool ipv4 = !p.wildcard && http::parse_ipv4(host).has_value();
    if (!ipv4 && !is_dns_name(host)) return fail(std::string(not_a_pattern));
    const auto norm = normalize_host(host);
    if (!norm && is_localhost_name(http::to_lower(host))) {
      return fail("names this machine (loopback); the sidecar never proxies to it");
    }
    if (!norm) return fail(std::string(not_a_pattern));
    if (p.wildcard && norm->find('.') == std::string::npos) {
      return fail(
          "is a wildcard over a top-level domain; a *. wildcard needs two labels, e.g. \"*.okta.com\"");
    }
    p.host = *norm;
  }
  if (port_text) {
    p.port = http::parse_port(*port_text);
    if (!p.port) return fail("has port " + quote(*port_text) + ", which is not a number from 1 to 65535");
  }
  return p;
}

}  // namespace okta_sidecar::policy
