#include "okta_sidecar/policy/address_guard.hpp"

#include <array>
#include <cstdint>

#include "okta_sidecar/http/ip_literal.hpp"

namespace okta_sidecar::policy {

namespace {

// The IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and its updates):
// every block that is not globally reachable, plus documentation and benchmarking ranges and
// the deprecated 6to4 relay anycast, none of which is ever Okta.
bool forbidden_v4(const std::array<std::uint8_t, 16>& b) {
  const std::uint8_t a = b[0], c = b[1], d = b[2];
  if (a == 0 || a == 10 || a == 127) return true;
  if (a == 192 && c == 0 && (d == 0 || d == 2)) return true;  // 192.0.0.0/24 IETF, 192.0.2.0/24 TEST-NET-1
  if (a == 192 && c == 88 && d == 99) return true;            // 192.88.99.0/24 6to4 relay (RFC 7526)
  if (a == 198 && (c & 0xfe) == 18) return true;              // 198.18.0.0/15 benchmarking (RFC 2544)
  if (a == 198 && c == 51 && d == 100) return true;           // 198.51.100.0/24 TEST-NET-2
  if (a == 203 && c == 0 && d == 113) return true;            // 203.0.113.0/24 TEST-NET-3
  if (a == 169 && c == 254) return true;
  if (a == 172 && (c & 0xf0) == 16) return true;
  if (a == 192 && c == 168) return true;
  if (a == 100 && (c & 0xc0) == 64) return true;
  if (a >= 224) return true;  // multicast 224/4, reserved 240/4, broadcast
  return false;
}

bool zero_bytes(const std::array<std::uint8_t, 16>& b, std::size_t from, std::size_t to) {
  for (std::size_t i = from; i < to; ++i)
    if (b[i] != 0) return false;
  return true;
}

}  // namespace

bool is_forbidden_destination(std::string_view ip_text) {
  const auto ip = http::parse_ip(ip_text);
  if (!ip) return true;
  const auto& b = ip->bytes;
  if (!ip->v6) return forbidden_v4(b);

  auto embedded_v4 = [&](std::size_t offset) {
    std::array<std::uint8_t, 16> v4{};
    for (std::size_t i = 0; i < 4; ++i) v4[i] = b[offset + i];
    return forbidden_v4(v4);
  };
  // ::/96 covers ::, ::1 and deprecated v4-compatible addresses; none is a public destination.
  if (zero_bytes(b, 0, 12)) return true;
  if (zero_bytes(b, 0, 10) && b[10] == 0xff && b[11] == 0xff) return embedded_v4(12);  // v4-mapped
  if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && zero_bytes(b, 4, 12))
    return embedded_v4(12);  // NAT64 well-known prefix (RFC 6052)
  if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0x00 && b[5] == 0x01)
    return true;  // 64:ff9b:1::/48 local-use NAT64 (RFC 8215): translates to anything
  if (b[0] == 0x01 && b[1] == 0x00 && zero_bytes(b, 2, 8)) return true;  // 100::/64 discard-only (RFC 6666)
  if (b[0] == 0x20 && b[1] == 0x01 && (b[2] & 0xfe) == 0x00)
    return true;  // 2001::/23 IETF protocol assignments: Teredo 2001::/32, benchmarking, ORCHID
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
    return true;                                                           // 2001:db8::/32 documentation
  if (b[0] == 0x3f && b[1] == 0xff && (b[2] & 0xf0) == 0x00) return true;  // 3fff::/20 documentation
  if (b[0] == 0x5f && b[1] == 0x00) return true;                           // 5f00::/16 SRv6 SIDs
  if (b[0] == 0x20 && b[1] == 0x02) return embedded_v4(2);                 // 6to4 (RFC 3056)
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return true;                  // fe80::/10 link-local
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return true;                  // fec0::/10 site-local
  if ((b[0] & 0xfe) == 0xfc) return true;                                  // fc00::/7 unique local
  if (b[0] == 0xff) return true;                                           // multicast
  return false;
}

}  // namespace okta_sidecar::policy
