#pragma once
// Request-target parsing for the forms a proxy sees (RFC 9112 §3.2): absolute-form for plain
// http:// requests, authority-form for CONNECT. Strict: userinfo, fragments, empty or
// non-numeric ports and percent-encoded hosts are refused rather than guessed at.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace okta_sidecar::http {

struct parsed_target {
  std::string scheme;          // "http" or "https", lower-case
  std::string host;            // lower-case; IPv6 without brackets
  std::uint16_t port = 0;      // explicit, or 80/443 by scheme
  std::string path_and_query;  // origin-form: starts with '/'
  bool explicit_port = false;  // the target named its port

  bool operator==(const parsed_target&) const = default;
};

// A port as a request-target or a host pattern writes it: 1..65535 in plain decimal, no sign and
// no leading zero (so "0443" is not quietly 443).
std::optional<std::uint16_t> parse_port(std::string_view text);

// http://host[:port]/p?q ("" path -> "/"), https:// too.
std::optional<parsed_target> parse_absolute_form(std::string_view target);
// The authority of an absolute-form target as written ("" without "://"): what its Host field
// nearly always repeats.
std::string_view absolute_form_authority(std::string_view target);
// host:port or [v6]:port; the port is required (RFC 9110 §9.3.6). Host lower-cased.
std::optional<std::pair<std::string, std::uint16_t>> parse_authority(std::string_view authority);

// A Host header value: host[:port] or [v6][:port], OWS trimmed, host lower-cased. Empty or
// malformed values give nullopt (an empty Host is legal only when there is no authority).
struct host_and_port {
  std::string host;
  std::optional<std::uint16_t> port;

  bool operator==(const host_and_port&) const = default;
};
std::optional<host_and_port> parse_host_header(std::string_view value);

// origin-form "/path?query": no CTLs, spaces, non-ASCII, '#', or broken %-escapes, so the
// sidecar and Okta cannot read the path differently.
bool is_valid_origin_form(std::string_view target);

// Does a Host header value name the same authority as an absolute-form target? (Ports compare
// after applying the scheme's default.) A mismatch is refused by the proxy: RFC 9112 §3.2.2
// lets a proxy ignore Host, but a disagreement is a sign of a confused or hostile client.
bool host_header_matches(std::string_view host_value, const parsed_target& target);
// The same for a Host value parse_host_header has already read.
bool host_header_matches(const host_and_port& host, const parsed_target& target);
// Inside a CONNECT tunnel: the Host must name the CONNECT host, and a port, when it gives one,
// must be the CONNECT port (a Host without a port names the tunnel's own authority, whatever
// the scheme spoken inside).
bool host_header_matches_tunnel(std::string_view host_value, std::string_view host, std::uint16_t port);

}  // namespace okta_sidecar::http
