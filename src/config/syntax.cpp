#include "okta_sidecar/config/syntax.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <vector>

#include "okta_sidecar/http/ip_literal.hpp"

namespace okta_sidecar::config {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), to_lower);
  return out;
}

std::string quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

// Plain decimal only: no sign, no spaces, at most `max_digits` digits.
template <class T>
std::optional<T> parse_decimal(std::string_view s, T max, std::size_t max_digits) {
  if (s.empty() || s.size() > max_digits) return std::nullopt;
  if (!std::all_of(s.begin(), s.end(), is_digit)) return std::nullopt;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v > static_cast<std::uint64_t>(max)) {
    return std::nullopt;
  }
  return static_cast<T>(v);
}

std::optional<std::uint16_t> parse_port(std::string_view s) {
  return parse_decimal<std::uint16_t>(s, 65535, 5);
}

std::optional<std::uint16_t> parse_hex_group(std::string_view g) {
  if (g.empty() || g.size() > 4) return std::nullopt;
  std::uint16_t v = 0;
  for (char c : g) {
    int d;
    if (is_digit(c)) {
      d = c - '0';
    } else if (to_lower(c) >= 'a' && to_lower(c) <= 'f') {
      d = to_lower(c) - 'a' + 10;
    } else {
      return std::nullopt;
    }
    v = static_cast<std::uint16_t>(v * 16 + d);
  }
  return v;
}

int edit_distance(std::string_view a, std::string_view b) {
  // Optimal string alignment: Levenshtein plus adjacent transposition ("resovle").
  const std::size_t n = a.size(), m = b.size();
  std::vector<std::vector<int>> d(n + 1, std::vector<int>(m + 1, 0));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = static_cast<int>(i);
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = static_cast<int>(j);
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    auto v = parse_hex_group(s.substr(i + 1, 2));
    if (!v) return std::nullopt;
    out.push_back(static_cast<char>(*v));
    i += 2;
  }
  return out;
}

}  // namespace

parsed<policy::cidr> explain_cidr(std::string_view text) {
  parsed<policy::cidr> out;
  out.value = policy::parse_cidr(text, &out.error);
  return out;
}

bool is_host_name_or_ipv4(std::string_view host) {
  return policy::is_dns_name(host) || http::parse_ipv4(host).has_value();
}

parsed<endpoint> explain_endpoint(std::string_view text) {
  if (text.empty()) return {std::nullopt, "is empty; expected HOST:PORT, e.g. \"127.0.0.1:3128\""};
  if (text.find("://") != std::string_view::npos) {
    return {std::nullopt, "is a URL; expected only HOST:PORT, e.g. \"127.0.0.1:3128\""};
  }
  std::string_view host, port_text;
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) {
      return {std::nullopt, "has no closing ']' after the IPv6 address"};
    }
    host = text.substr(1, close - 1);
    if (!http::parse_ipv6(host)) {
      return {std::nullopt, "has " + quote(host) + " in brackets, which is not an IPv6 address"};
    }
    std::string_view rest = text.substr(close + 1);
    if (rest.empty()) return {std::nullopt, "has no port; expected [IPv6]:PORT, e.g. \"[::1]:3128\""};
    if (rest.front() != ':') return {std::nullopt, "has " + quote(rest) + " after ']'; expected :PORT"};
    port_text = rest.substr(1);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return {std::nullopt, "has no port; expected HOST:PORT, e.g. \"127.0.0.1:3128\""};
    }
    if (text.find(':') != colon) {
      return {std::nullopt, "is not HOST:PORT; IPv6 addresses go in brackets, e.g. \"[::1]:3128\""};
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.empty()) {
      return {std::nullopt, "has no host; write \"0.0.0.0" + std::string(text) +
                                "\" for every IPv4 interface or \"127.0.0.1" + std::string(text) +
                                "\" for this machine only"};
    }
    if (!is_host_name_or_ipv4(host)) {
      return {std::nullopt, "has host " + quote(host) + ", which is not a valid host name or IPv4 address"};
    }
  }
  auto port = parse_port(port_text);
  if (!port) {
    return {std::nullopt, "has port " + quote(port_text) + ", which is not a number from 0 to 65535"};
  }
  return {endpoint{std::string(host), *port}, {}};
}

std::optional<endpoint> parse_endpoint(std::string_view text) { return explain_endpoint(text).value; }

parsed<policy::host_pattern> explain_host_pattern(std::string_view text) {
  parsed<policy::host_pattern> out;
  out.value = policy::parse_host_pattern(text, &out.error);
  return out;
}

parsed<redis_url> explain_redis_url(std::string_view text) {
  static constexpr std::string_view shape = " (expected redis://[user:password@]host:port[/db])";
  auto fail = [](std::string why) {
    return parsed<redis_url>{std::nullopt, std::move(why) + std::string(shape)};
  };
  redis_url u;
  std::string_view rest;
  if (text.starts_with("redis://")) {
    rest = text.substr(8);
  } else if (text.starts_with("rediss://")) {
    rest = text.substr(9);
    u.tls = true;
  } else {
    return fail("does not start with redis:// or rediss://");
  }
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return fail("has a query or fragment, which is not supported");
  }
  auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
  auto at = authority.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority.remove_prefix(at + 1);
    auto colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      return fail("has credentials without ':' (write user:password@ or :password@)");
    }
    auto user = percent_decode(userinfo.substr(0, colon));
    auto password = percent_decode(userinfo.substr(colon + 1));
    if (!user || !password) return fail("has a malformed %-escape in its credentials");
    u.user = *user;
    u.password = *password;
  }
  auto ep = explain_endpoint(authority);
  if (!ep) return fail("has server " + quote(authority) + ", which is not HOST:PORT");
  if (ep.value->port == 0) return fail("has port 0");
  u.server = *ep.value;
  if (!path.empty()) {
    auto db = parse_decimal<std::uint32_t>(path, std::numeric_limits<std::int32_t>::max(), 10);
    if (!db) return fail("has database " + quote(path) + ", which is not a non-negative number");
    u.db = *db;
  }
  return {u, {}};
}

std::optional<redis_url> parse_redis_url(std::string_view text) { return explain_redis_url(text).value; }

std::string redact_redis_url(std::string_view text) {
  auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) return std::string(text);
  std::size_t start = scheme_end + 3;
  auto auth_end = text.find('/', start);
  std::string_view authority =
      text.substr(start, auth_end == std::string_view::npos ? std::string_view::npos : auth_end - start);
  auto at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(text);
  std::string_view userinfo = authority.substr(0, at);
  auto colon = userinfo.find(':');
  std::string masked =
      colon == std::string_view::npos ? "****" : std::string(userinfo.substr(0, colon)) + ":****";
  return std::string(text.substr(0, start)) + masked + std::string(text.substr(start + at));
}

std::optional<std::string> closest_match(std::string_view word,
                                         std::span<const std::string_view> candidates) {
  auto normal = [](std::string_view s) {
    std::string out = lower(s);
    std::replace(out.begin(), out.end(), '-', '_');
    return out;
  };
  const std::string w = normal(word);
  const int max_distance = w.size() <= 3 ? 1 : (w.size() <= 6 ? 2 : 3);
  std::optional<std::string> best;
  int best_distance = max_distance + 1;
  for (std::string_view c : candidates) {
    const std::string n = normal(c);
    int d = edit_distance(w, n);
    // A key written without its unit or qualifier ("lease" for "lease_size").
    if (w.size() >= 4 && n.size() > w.size() && n.starts_with(w) && n[w.size()] == '_') {
      d = std::min(d, 1);
    }
    if (d < best_distance) {
      best_distance = d;
      best = std::string(c);
    }
  }
  return best;
}

}  // namespace okta_sidecar::config
