#include "okta_sidecar/policy/host_policy.hpp"

#include <algorithm>
#include <stdexcept>

#include "okta_sidecar/http/ip_literal.hpp"
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

std::optional<std::uint16_t> parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0') || !all_digits(s)) return std::nullopt;
  const unsigned v = static_cast<unsigned>(std::stoul(std::string(s)));
  if (v == 0 || v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

}  // namespace

std::optional<std::string> host_policy::normalize_host(std::string_view host) {
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
  if (h.empty() || h.size() > max_host_length) return std::nullopt;

  std::vector<std::string_view> labels;
  std::string_view rest = h;
  for (;;) {
    const auto dot = rest.find('.');
    labels.push_back(rest.substr(0, dot));
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  // A numeric or hex last label makes the whole name an IPv4 address to inet_aton and most
  // resolvers ("127.1", "2130706433", "0x7f.1"): accept only the canonical dotted quad.
  const std::string_view last = labels.back();
  if (all_digits(last) || is_hex_number(last)) {
    const auto v4 = http::parse_ipv4(h);
    if (!v4) return std::nullopt;
    return v4->to_string();
  }
  for (auto label : labels)
    if (!valid_label(label)) return std::nullopt;
  if (is_localhost_name(h)) return std::nullopt;
  return h;
}

host_policy::pattern host_policy::parse_pattern(const std::string& text, const char* list) {
  auto bad = [&](const std::string& why) {
    return std::runtime_error(std::string(list) + ": invalid host pattern \"" + text + "\": " + why);
  };
  pattern p;
  std::string_view t = text;
  // Optional ":port": after "]" for IPv6, after the only ':' otherwise.
  std::string_view host_part = t;
  if (!t.empty() && t.front() == '[') {
    const auto close = t.find(']');
    if (close == std::string_view::npos) throw bad("missing ']'");
    host_part = t.substr(0, close + 1);
    if (close + 1 < t.size()) {
      if (t[close + 1] != ':') throw bad("expected ':port' after ']'");
      p.port = parse_port(t.substr(close + 2));
      if (!p.port) throw bad("port must be 1-65535");
    }
  } else if (std::count(t.begin(), t.end(), ':') == 1) {
    const auto colon = t.find(':');
    host_part = t.substr(0, colon);
    p.port = parse_port(t.substr(colon + 1));
    if (!p.port) throw bad("port must be 1-65535");
  }
  if (host_part.substr(0, 2) == "*.") {
    p.wildcard = true;
    host_part.remove_prefix(2);
    if (host_part.find('*') != std::string_view::npos) throw bad("only one leading \"*.\" is allowed");
    const auto norm = normalize_host(host_part);
    if (!norm) throw bad("not a valid host name after \"*.\"");
    if (http::parse_ip(*norm)) throw bad("a wildcard cannot name an IP address");
    if (norm->find('.') == std::string::npos)
      throw bad("a wildcard needs at least two labels (\"*.example.com\")");
    p.host = *norm;
    return p;
  }
  if (host_part.find('*') != std::string_view::npos) throw bad("'*' is allowed only as a leading \"*.\"");
  const auto norm = normalize_host(host_part);
  if (!norm) throw bad("not a valid host name or IP address");
  p.host = *norm;
  return p;
}

host_policy::host_policy(const std::vector<std::string>& intercept, const std::vector<std::string>& tunnel,
                         std::vector<std::uint16_t> allowed_ports)
    : allowed_ports_(std::move(allowed_ports)) {
  for (const auto& s : intercept) intercept_.push_back(parse_pattern(s, "intercept_hosts"));
  for (const auto& s : tunnel) tunnel_.push_back(parse_pattern(s, "tunnel_hosts"));
}

bool host_policy::port_ok(const pattern& p, std::uint16_t port) const {
  if (p.port) return *p.port == port;
  return std::find(allowed_ports_.begin(), allowed_ports_.end(), port) != allowed_ports_.end();
}

bool host_policy::host_matches(const pattern& p, std::string_view host) {
  if (!p.wildcard) return host == p.host;
  return host.size() > p.host.size() + 1 && host.substr(host.size() - p.host.size()) == p.host &&
         host[host.size() - p.host.size() - 1] == '.';
}

bool host_policy::intercepts(std::string_view host) const {
  const auto h = normalize_host(host);
  if (!h) return false;
  return std::any_of(intercept_.begin(), intercept_.end(),
                     [&](const pattern& p) { return host_matches(p, *h); });
}

std::vector<std::string> host_policy::exact_intercept_hosts() const {
  std::vector<std::string> out;
  for (const auto& p : intercept_)
    if (!p.wildcard) out.push_back(p.host);
  return out;
}

std::vector<std::string> host_policy::intercept_suffixes() const {
  std::vector<std::string> out;
  for (const auto& p : intercept_)
    if (p.wildcard) out.push_back(p.host);
  return out;
}

decision host_policy::decide(std::string_view host, std::uint16_t port) const {
  const auto h = normalize_host(host);
  if (!h) return {route::refuse, "invalid or forbidden host name"};
  bool port_refused = false;
  for (const auto& [list, r] :
       {std::pair{&intercept_, route::intercept}, std::pair{&tunnel_, route::tunnel}}) {
    for (const auto& p : *list) {
      if (!host_matches(p, *h)) continue;
      if (port_ok(p, port)) return {r, {}};
      port_refused = true;
    }
  }
  if (port_refused) return {route::refuse, "port " + std::to_string(port) + " not allowed"};
  return {route::refuse, "host not in intercept_hosts or tunnel_hosts"};
}

}  // namespace okta_sidecar::policy
