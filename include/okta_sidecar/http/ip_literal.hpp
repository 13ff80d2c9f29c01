#pragma once
// Strict IP address text forms, shared by target parsing and the destination policy. Strict
// because lenient forms ("127.1", "0x7f.0.0.1", "017.0.0.1") are how SSRF filters are bypassed:
// a resolver reads them as an address while a name check reads them as a name.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace okta_sidecar::http {

// An IPv4 (first 4 bytes used) or IPv6 address.
struct ip_literal {
  std::array<std::uint8_t, 16> bytes{};
  bool v6 = false;

  bool operator==(const ip_literal&) const = default;
  std::string to_string() const;  // dotted quad, or RFC 5952 compressed lower-case IPv6
};

// Exactly four decimal parts 0..255, no leading zeros ("010" is octal to inet_aton), no sign.
std::optional<ip_literal> parse_ipv4(std::string_view text);
// RFC 4291 §2.2 forms, "::" and an optional trailing dotted quad; no brackets, no zone id.
std::optional<ip_literal> parse_ipv6(std::string_view text);
// Either of the above; a "%zone" suffix (as Asio prints link-local addresses) is ignored.
std::optional<ip_literal> parse_ip(std::string_view text);

// For ::ffff:a.b.c.d, the embedded IPv4 address; otherwise the address itself.
ip_literal unmap_v4(const ip_literal& address);

}  // namespace okta_sidecar::http
