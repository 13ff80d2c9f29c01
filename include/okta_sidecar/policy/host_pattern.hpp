#pragma once
// The host syntaxes of the destination policy, in one place: the host-name grammar, the
// normalised form every host is compared in, and the intercept_hosts / tunnel_hosts pattern.
// The config loader validates with these same functions, so a configuration it accepts is one
// the runtime accepts too.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace okta_sidecar::policy {

// An RFC 1123 §2.1 host name: labels of letters, digits and '-' (not at either end), 1..63
// characters each, 253 in all, no trailing dot. A last label of digits only is refused: no
// top-level domain is numeric, so "10.0.0.256" or "127.1" is an attempted IPv4 address.
bool is_dns_name(std::string_view name);

// Lower-case, one trailing dot removed, IPv6 brackets stripped and the address written in
// RFC 5952 form, IPv4 as a strict dotted quad. nullopt for: empty, over-long, invalid
// characters or labels, "localhost" and *.localhost names, numeric IPv4 forms other than the
// dotted quad (2130706433, 0x7f.1, 127.1, 0177.0.0.1: resolvers read them as addresses),
// percent-encoding, userinfo.
std::optional<std::string> normalize_host(std::string_view host);

// An intercept_hosts / tunnel_hosts entry: "acme.okta.com", "*.okta.com" (any depth of
// subdomain, never the bare suffix; the suffix needs two labels), an IPv4 address or a
// bracketed IPv6 one ("[::1]"), each with an optional ":port".
struct host_pattern {
  std::string host;                   // normalised; for a wildcard the suffix without "*."
  bool wildcard = false;              // "*.okta.com" matches x.okta.com and a.b.okta.com, not okta.com
  std::optional<std::uint16_t> port;  // unset: the caller's default ports apply

  bool operator==(const host_pattern&) const = default;
  // `normalized_host` as normalize_host returns it; ports are the caller's business.
  bool matches_host(std::string_view normalized_host) const;
};

// nullopt for anything else, and then, when `why` is given, a phrase saying what is wrong,
// written to follow the quoted entry ("is a wildcard over IP addresses; ...").
std::optional<host_pattern> parse_host_pattern(std::string_view text, std::string* why = nullptr);

}  // namespace okta_sidecar::policy
