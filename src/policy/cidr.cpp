#include "okta_sidecar/policy/cidr.hpp"

#include <stdexcept>

#include "okta_sidecar/http/text.hpp"

namespace okta_sidecar::policy {

namespace {

bool prefix_equal(const http::ip_literal& a, const http::ip_literal& b, unsigned prefix) {
  const unsigned full = prefix / 8, bits = prefix % 8;
  for (unsigned i = 0; i < full; ++i)
    if (a.bytes[i] != b.bytes[i]) return false;
  if (bits == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - bits));
  return (a.bytes[full] & mask) == (b.bytes[full] & mask);
}

}  // namespace

cidr_list cidr_list::parse(const std::vector<std::string>& entries) {
  cidr_list out;
  for (const auto& entry : entries) {
    auto bad = [&](const char* why) {
      return std::runtime_error("access.allowed_clients: invalid CIDR \"" + entry + "\": " + why);
    };
    const auto slash = entry.find('/');
    const std::string_view addr = std::string_view(entry).substr(0, slash);
    if (addr.find('%') != std::string_view::npos) throw bad("zone ids are not allowed");
    const auto ip = http::parse_ip(addr);
    if (!ip) throw bad("not an IPv4 or IPv6 address");
    const unsigned max_prefix = ip->v6 ? 128 : 32;
    unsigned prefix = max_prefix;
    if (slash != std::string::npos) {
      const std::string_view p = std::string_view(entry).substr(slash + 1);
      if (p.empty() || p.size() > 3 || (p.size() > 1 && p[0] == '0')) throw bad("bad prefix length");
      prefix = 0;
      for (char c : p) {
        if (!http::is_digit(c)) throw bad("bad prefix length");
        prefix = prefix * 10 + static_cast<unsigned>(c - '0');
      }
      if (prefix > max_prefix) throw bad(ip->v6 ? "prefix length above 128" : "prefix length above 32");
    }
    out.ranges_.push_back({*ip, prefix});
  }
  return out;
}

bool cidr_list::contains(std::string_view ip_text) const {
  const auto parsed = http::parse_ip(ip_text);
  if (!parsed) return false;
  const http::ip_literal ip = http::unmap_v4(*parsed);
  for (const auto& r : ranges_) {
    const http::ip_literal net = r.network;
    if (net.v6 == ip.v6 && prefix_equal(net, ip, r.prefix)) return true;
    // A v4-mapped range (::ffff:10.0.0.0/104) also matches the plain IPv4 form.
    if (net.v6 && !ip.v6 && r.prefix >= 96) {
      const http::ip_literal as_v4 = http::unmap_v4(net);
      if (!as_v4.v6 && prefix_equal(as_v4, ip, r.prefix - 96)) return true;
    }
  }
  return false;
}

}  // namespace okta_sidecar::policy
