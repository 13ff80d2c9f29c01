#include "okta_sidecar/policy/address_guard.hpp"

#include <array>
#include <cstdint>

#include "okta_sidecar/http/ip_literal.hpp"

namespace okta_sidecar::policy {

namespace {

bool forbidden_v4(const std::array<std::uint8_t, 16>& b) {
  const std::uint8_t a = b[0], c = b[1];
  if (a == 0 || a == 10 || a == 127) return true;
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
    return embedded_v4(12);                                 // NAT64 well-known prefix (RFC 6052)
  if (b[0] == 0x20 && b[1] == 0x02) return embedded_v4(2);  // 6to4 (RFC 3056)
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return true;   // fe80::/10 link-local
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return true;   // fec0::/10 site-local
  if ((b[0] & 0xfe) == 0xfc) return true;                   // fc00::/7 unique local
  if (b[0] == 0xff) return true;                            // multicast
  return false;
}

}  // namespace okta_sidecar::policy
