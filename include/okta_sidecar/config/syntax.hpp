#pragma once
// Parsers for the small value syntaxes that configuration strings carry (endpoints, IP
// addresses, CIDRs, host patterns, Redis URLs) and the "did you mean" helper. Each parser has
// an `explain_*` twin that says what is wrong, so config errors can tell the user why. The
// syntaxes the runtime reads as well (IP literals, CIDRs, host names and patterns) are parsed
// by the http and policy functions the runtime calls, never by a copy here, so the loader
// accepts exactly what the runtime does.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "okta_sidecar/config/config.hpp"
#include "okta_sidecar/policy/cidr.hpp"
#include "okta_sidecar/policy/host_pattern.hpp"

namespace okta_sidecar::config {

// Either the parsed value or a sentence saying what is wrong with the text.
template <class T>
struct parsed {
  std::optional<T> value;
  std::string error;  // empty when value is set

  explicit operator bool() const { return value.has_value(); }
};

// access.allowed_clients entries: policy::parse_cidr, the parser the runtime uses, with its
// explanation in `error`.
parsed<policy::cidr> explain_cidr(std::string_view text);

// True for a host name as policy::is_dns_name reads it or an IPv4 address as
// http::parse_ipv4 does: a name whose last label is all digits must be a valid IPv4 address.
bool is_host_name_or_ipv4(std::string_view host);

// "host:port", "[v6]:port". Port 0 is accepted (ephemeral listen); callers that need a real
// port check it themselves.
parsed<endpoint> explain_endpoint(std::string_view text);
std::optional<endpoint> parse_endpoint(std::string_view text);

// intercept_hosts / tunnel_hosts entries: policy::parse_host_pattern, the parser the runtime
// uses, with its explanation in `error`.
parsed<policy::host_pattern> explain_host_pattern(std::string_view text);

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
