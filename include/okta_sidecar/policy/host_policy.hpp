#pragma once
// Destination policy: the sidecar is never an open proxy. A destination is intercepted, tunnelled
// or refused, decided only by the configured lists (docs/architecture.md, intercept_hosts / tunnel_hosts).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace okta_sidecar::policy {

enum class route { intercept, tunnel, refuse };

struct decision {
  route r = route::refuse;
  std::string why;  // for refusals, e.g. "port 22 not allowed"; safe for logs
};

// The intercept and tunnel lists, matched against a normalised host and a port.
class host_policy {
 public:
  // Patterns: exact names or "*.suffix" wildcards (any depth of subdomain, never the bare
  // suffix; the suffix needs two labels), optional ":port" (without one, allowed_ports apply).
  // IP literals ("10.1.2.3", "[::1]:8443") match exactly. Throws std::runtime_error naming the
  // bad pattern. A host in both lists is intercepted.
  host_policy(const std::vector<std::string>& intercept, const std::vector<std::string>& tunnel,
              std::vector<std::uint16_t> allowed_ports);

  decision decide(std::string_view host, std::uint16_t port) const;
  // True when `host` matches an intercept_hosts pattern, whatever the port: the cleartext
  // refusal (issue 14) comes before the port check, so http://acme.okta.com/ is told why.
  bool intercepts(std::string_view host) const;
  // The intercept entries that name one host exactly (no wildcard), normalised.
  std::vector<std::string> exact_intercept_hosts() const;
  // The suffixes of the wildcard intercept entries ("okta.com" for "*.okta.com").
  std::vector<std::string> intercept_suffixes() const;

  // Lower-case, one trailing dot removed, IPv6 brackets stripped and the address written in
  // RFC 5952 form, IPv4 as a strict dotted quad. nullopt for: empty, over-long, invalid
  // characters or labels, "localhost" and *.localhost names, numeric IPv4 forms other than the
  // dotted quad (2130706433, 0x7f.1, 127.1, 0177.0.0.1: resolvers read them as addresses),
  // percent-encoding, userinfo.
  static std::optional<std::string> normalize_host(std::string_view host);

 private:
  struct pattern {
    std::string host;  // normalised; for a wildcard the suffix without "*."
    bool wildcard = false;
    std::optional<std::uint16_t> port;
  };
  static pattern parse_pattern(const std::string& text, const char* list);
  bool port_ok(const pattern& p, std::uint16_t port) const;
  static bool host_matches(const pattern& p, std::string_view host);

  std::vector<pattern> intercept_;
  std::vector<pattern> tunnel_;
  std::vector<std::uint16_t> allowed_ports_;
};

}  // namespace okta_sidecar::policy
