#pragma once
// Parsers for the small value syntaxes that configuration strings carry (endpoints, IP
// addresses, CIDRs, host patterns, Redis URLs) and the "did you mean" helper. Each parser has
// an `explain_*` twin that says what is wrong, so config errors can tell the user why.
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "okta_sidecar/config/config.hpp"

namespace okta_sidecar::config {

// Either the parsed value or a sentence saying what is wrong with the text.
template <class T>
struct parsed {
  std::optional<T> value;
  std::string error;  // empty when value is set

  explicit operator bool() const { return value.has_value(); }
};

// An IPv4 or IPv6 address; IPv4 lives in the first 4 bytes of `bytes`.
struct ip_address {
  std::array<std::uint8_t, 16> bytes{};
  bool v6 = false;

  bool operator==(const ip_address&) const = default;
  std::string to_string() const;  // dotted quad, or RFC 5952 compressed IPv6
};

// Dotted quad with no leading zeros ("010.0.0.1" is refused: some stacks read it as octal), or
// RFC 4291 section 2.2 text form (with "::" and an optional trailing dotted quad); no zone id.
std::optional<ip_address> parse_ip(std::string_view text);

// A source address range for access.allowed_clients. A bare address means /32 or /128.
struct cidr {
  ip_address network;
  std::uint8_t prefix_len = 0;

  bool operator==(const cidr&) const = default;
  // IPv4-mapped IPv6 clients (::ffff:a.b.c.d, seen on dual-stack listeners) match IPv4 ranges.
  bool contains(const ip_address& address) const;
};
parsed<cidr> explain_cidr(std::string_view text);
std::optional<cidr> parse_cidr(std::string_view text);

// True for an RFC 1123 host name (letters, digits, hyphens; labels 1..63, total <= 253) or
// an IPv4 address. A name whose last label is all digits must be a valid IPv4 address.
bool is_host_name_or_ipv4(std::string_view host);

// "host:port", "[v6]:port". Port 0 is accepted (ephemeral listen); callers that need a real
// port check it themselves.
parsed<endpoint> explain_endpoint(std::string_view text);
std::optional<endpoint> parse_endpoint(std::string_view text);

// An intercept_hosts / tunnel_hosts entry: "acme.okta.com", "*.okta.com", optional ":port",
// "[::1]:443". Host names compare case-insensitively, so `host` is lower-cased.
struct host_pattern {
  std::string host;                   // for a wildcard, the suffix after "*." ("okta.com")
  bool wildcard = false;              // "*.okta.com" matches any name ending in ".okta.com", not okta.com
  std::optional<std::uint16_t> port;  // unset = any port

  bool operator==(const host_pattern&) const = default;
  bool matches(std::string_view host, std::uint16_t port) const;
};
parsed<host_pattern> explain_host_pattern(std::string_view text);
std::optional<host_pattern> parse_host_pattern(std::string_view text);

// fleet.redis: redis://[user:password@]host:port[/db] or rediss:// (TLS). User and password
// are percent-decoded; the user may be empty (Redis < 6 "AUTH password").
struct redis_url {
  bool tls = false;
  std::string user;
  std::optional<std::string> password;
  endpoint server;
  std::uint32_t db = 0;

  bool operator==(const redis_url&) const = default;
};
parsed<redis_url> explain_redis_url(std::string_view text);
std::optional<redis_url> parse_redis_url(std::string_view text);
// The URL with any password replaced by "****", safe for logs and error messages.
std::string redact_redis_url(std::string_view text);

// The candidate closest to `word` by edit distance (transpositions count once; case and
// '-' vs '_' are ignored), if it is close enough to be a plausible typo.
std::optional<std::string> closest_match(std::string_view word, std::span<const std::string_view> candidates);

}  // namespace okta_sidecar::config
