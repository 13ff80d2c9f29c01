#include "okta_sidecar/config/syntax.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <limits>
#include <vector>

namespace okta_sidecar::config {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
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

std::optional<std::array<std::uint8_t, 4>> parse_ipv4(std::string_view s) {
  std::array<std::uint8_t, 4> out{};
  for (int i = 0; i < 4; ++i) {
    auto dot = s.find('.');
    std::string_view part = (i < 3) ? s.substr(0, dot) : s;
    if ((i < 3) == (dot == std::string_view::npos)) return std::nullopt;
    // Leading zeros are refused: inet_aton() would read "010" as octal 8.
    if (part.size() > 1 && part[0] == '0') return std::nullopt;
    auto v = parse_decimal<std::uint8_t>(part, 255, 3);
    if (!v) return std::nullopt;
    out[static_cast<std::size_t>(i)] = *v;
    if (i < 3) s.remove_prefix(dot + 1);
  }
  return out;
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

// Parses colon-separated groups; a dotted quad is allowed as the final group when
// `allow_v4_tail`, and counts as two groups.
std::optional<std::vector<std::uint16_t>> parse_groups(std::string_view s, bool allow_v4_tail) {
  std::vector<std::uint16_t> out;
  if (s.empty()) return out;
  while (true) {
    auto colon = s.find(':');
    std::string_view g = s.substr(0, colon);
    bool last = colon == std::string_view::npos;
    if (last && allow_v4_tail && g.find('.') != std::string_view::npos) {
      auto v4 = parse_ipv4(g);
      if (!v4) return std::nullopt;
      out.push_back(static_cast<std::uint16_t>((*v4)[0] << 8 | (*v4)[1]));
      out.push_back(static_cast<std::uint16_t>((*v4)[2] << 8 | (*v4)[3]));
      return out;
    }
    auto v = parse_hex_group(g);
    if (!v) return std::nullopt;
    out.push_back(*v);
    if (last) return out;
    s.remove_prefix(colon + 1);
  }
}

std::optional<std::array<std::uint8_t, 16>> parse_ipv6(std::string_view s) {
  std::vector<std::uint16_t> groups;
  auto dc = s.find("::");
  if (dc == std::string_view::npos) {
    auto all = parse_groups(s, true);
    if (!all || all->size() != 8) return std::nullopt;
    groups = *all;
  } else {
    if (s.find("::", dc + 1) != std::string_view::npos) return std::nullopt;
    auto head = parse_groups(s.substr(0, dc), false);
    auto tail = parse_groups(s.substr(dc + 2), true);
    if (!head || !tail || head->size() + tail->size() > 7) return std::nullopt;
    groups = *head;
    groups.resize(8 - tail->size(), 0);
    groups.insert(groups.end(), tail->begin(), tail->end());
  }
  std::array<std::uint8_t, 16> out{};
  for (std::size_t i = 0; i < 8; ++i) {
    out[2 * i] = static_cast<std::uint8_t>(groups[i] >> 8);
    out[2 * i + 1] = static_cast<std::uint8_t>(groups[i] & 0xff);
  }
  return out;
}

bool is_ipv4_mapped(const ip_address& a) {
  if (!a.v6) return false;
  for (std::size_t i = 0; i < 10; ++i) {
    if (a.bytes[i] != 0) return false;
  }
  return a.bytes[10] == 0xff && a.bytes[11] == 0xff;
}

bool is_label(std::string_view l) {
  if (l.empty() || l.size() > 63 || l.front() == '-' || l.back() == '-') return false;
  return std::all_of(l.begin(), l.end(), [](char c) { return is_alpha(c) || is_digit(c) || c == '-'; });
}

// RFC 1123 section 2.1 names; an all-digit last label is treated as an attempted IPv4
// address (no top-level domain is all-numeric), so "10.0.0.256" is not a valid "name".
bool is_dns_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::string_view rest = name;
  std::string_view last;
  while (true) {
    auto dot = rest.find('.');
    last = rest.substr(0, dot);
    if (!is_label(last)) return false;
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  return !std::all_of(last.begin(), last.end(), is_digit);
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

std::string ip_address::to_string() const {
  char buf[64];
  if (!v6) {
    std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", bytes[0], bytes[1], bytes[2], bytes[3]);
    return buf;
  }
  if (is_ipv4_mapped(*this)) {  // RFC 5952 section 5
    std::snprintf(buf, sizeof buf, "::ffff:%u.%u.%u.%u", bytes[12], bytes[13], bytes[14], bytes[15]);
    return buf;
  }
  std::array<unsigned, 8> g{};
  for (std::size_t i = 0; i < 8; ++i) g[i] = static_cast<unsigned>(bytes[2 * i] << 8 | bytes[2 * i + 1]);
  // RFC 5952 section 4.2: "::" replaces the first longest run of two or more zero groups.
  int best_start = -1, best_len = 1;
  for (int i = 0; i < 8;) {
    if (g[static_cast<std::size_t>(i)] != 0) {
      ++i;
      continue;
    }
    int j = i;
    while (j < 8 && g[static_cast<std::size_t>(j)] == 0) ++j;
    if (j - i > best_len) {
      best_start = i;
      best_len = j - i;
    }
    i = j;
  }
  std::string out;
  for (int i = 0; i < 8; ++i) {
    if (i == best_start) {
      out += "::";
      i += best_len - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    std::snprintf(buf, sizeof buf, "%x", g[static_cast<std::size_t>(i)]);
    out += buf;
  }
  return out;
}

std::optional<ip_address> parse_ip(std::string_view text) {
  ip_address a;
  if (text.find(':') != std::string_view::npos) {
    auto v6 = parse_ipv6(text);
    if (!v6) return std::nullopt;
    a.bytes = *v6;
    a.v6 = true;
    return a;
  }
  auto v4 = parse_ipv4(text);
  if (!v4) return std::nullopt;
  std::copy(v4->begin(), v4->end(), a.bytes.begin());
  return a;
}

bool cidr::contains(const ip_address& address) const {
  ip_address a = address;
  if (!network.v6 && is_ipv4_mapped(a)) {
    std::copy(a.bytes.begin() + 12, a.bytes.end(), a.bytes.begin());
    std::fill(a.bytes.begin() + 4, a.bytes.end(), 0);
    a.v6 = false;
  }
  if (a.v6 != network.v6) return false;
  std::size_t full = prefix_len / 8;
  for (std::size_t i = 0; i < full; ++i) {
    if (a.bytes[i] != network.bytes[i]) return false;
  }
  unsigned rem = prefix_len % 8;
  if (rem == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xff << (8 - rem));
  return (a.bytes[full] & mask) == (network.bytes[full] & mask);
}

parsed<cidr> explain_cidr(std::string_view text) {
  auto slash = text.find('/');
  std::string_view addr_text = text.substr(0, slash);
  auto addr = parse_ip(addr_text);
  if (!addr) {
    return {std::nullopt, quote(addr_text) + " is not an IPv4 or IPv6 address"};
  }
  const unsigned max_len = addr->v6 ? 128 : 32;
  cidr c{*addr, static_cast<std::uint8_t>(max_len)};
  if (slash != std::string_view::npos) {
    std::string_view len_text = text.substr(slash + 1);
    auto len = parse_decimal<unsigned>(len_text, max_len, 3);
    if (!len) {
      return {std::nullopt, "has prefix length /" + std::string(len_text) + "; expected a number from 0 to " +
                                std::to_string(max_len) + (addr->v6 ? " for IPv6" : " for IPv4")};
    }
    c.prefix_len = static_cast<std::uint8_t>(*len);
  }
  // Bits after the prefix are almost always a typo for the network address ("10.0.0.1/8").
  cidr masked = c;
  for (unsigned bit = c.prefix_len; bit < max_len; ++bit) {
    masked.network.bytes[bit / 8] =
        static_cast<std::uint8_t>(masked.network.bytes[bit / 8] & ~(0x80u >> (bit % 8)));
  }
  if (masked.network != c.network) {
    return {std::nullopt, "has address bits set after the /" + std::to_string(c.prefix_len) +
                              " prefix (did you mean \"" + masked.network.to_string() + "/" +
                              std::to_string(c.prefix_len) + "\"?)"};
  }
  return {c, {}};
}

std::optional<cidr> parse_cidr(std::string_view text) { return explain_cidr(text).value; }

bool is_host_name_or_ipv4(std::string_view host) { return is_dns_name(host) || parse_ipv4(host).has_value(); }

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
    if (host.find(':') == std::string_view::npos || !parse_ipv6(host)) {
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

bool host_pattern::matches(std::string_view name, std::uint16_t p) const {
  if (port && *port != p) return false;
  std::string n = lower(name);
  if (!wildcard) return n == host;
  return n.size() > host.size() + 1 && n.ends_with(host) && n[n.size() - host.size() - 1] == '.';
}

parsed<host_pattern> explain_host_pattern(std::string_view text) {
  static constexpr std::string_view not_a_pattern = "is not a host name or *.suffix wildcard";
  if (text.empty()) return {std::nullopt, "is empty; expected a host name or *.suffix wildcard"};
  if (text.find("://") != std::string_view::npos) {
    return {std::nullopt, "is a URL; expected only a host name, e.g. \"acme.okta.com\""};
  }
  host_pattern p;
  std::string_view host;
  std::optional<std::string_view> port_text;
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return {std::nullopt, "has no closing ']' after the IPv6 address"};
    host = text.substr(1, close - 1);
    if (host.find(':') == std::string_view::npos || !parse_ipv6(host)) {
      return {std::nullopt, "has " + quote(host) + " in brackets, which is not an IPv6 address"};
    }
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return {std::nullopt, "has " + quote(rest) + " after ']'; expected :PORT"};
      port_text = rest.substr(1);
    }
    p.host = lower(host);
  } else {
    auto colon = text.find(':');
    if (colon != std::string_view::npos && text.find(':', colon + 1) != std::string_view::npos) {
      return {std::nullopt, "is not a host pattern; IPv6 addresses go in brackets, e.g. \"[::1]:443\""};
    }
    host = text.substr(0, colon);
    if (colon != std::string_view::npos) port_text = text.substr(colon + 1);
    if (host.starts_with("*.")) {
      std::string_view suffix = host.substr(2);
      if (parse_ipv4(suffix) || (!suffix.empty() && std::all_of(suffix.begin(), suffix.end(), [](char c) {
            return is_digit(c) || c == '.';
          }))) {
        return {std::nullopt, "is a wildcard over IP addresses; a *. wildcard needs a DNS suffix"};
      }
      if (!is_dns_name(suffix)) return {std::nullopt, std::string(not_a_pattern)};
      p.wildcard = true;
      p.host = lower(suffix);
    } else {
      if (!is_host_name_or_ipv4(host)) return {std::nullopt, std::string(not_a_pattern)};
      p.host = lower(host);
    }
  }
  if (port_text) {
    auto port = parse_port(*port_text);
    if (!port || *port == 0) {
      return {std::nullopt, "has port " + quote(*port_text) + ", which is not a number from 1 to 65535"};
    }
    p.port = *port;
  }
  return {p, {}};
}

std::optional<host_pattern> parse_host_pattern(std::string_view text) {
  return explain_host_pattern(text).value;
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
