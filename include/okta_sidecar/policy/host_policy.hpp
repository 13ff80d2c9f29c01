#pragma once
// Destination policy: the sidecar is never an open proxy. A destination is intercepted, tunnelled
// or refused, decided only by the configured lists (docs/architecture.md, intercept_hosts / tunnel_hosts).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "okta_sidecar/policy/host_pattern.hpp"

namespace okta_sidecar::policy {

enum class route { intercept, tunnel, refuse };

struct decision {
  route r = route::refuse;
  std::string why;  // for refusals, e.g. "port 22 not allowed"; safe for logs
};

// The intercept and tunnel lists, matched against a normalised host and a port.
class host_policy {
 public:
  // Patterns as parse_host_pattern reads them (without a ":port", allowed_ports apply). Throws
  // std::runtime_error naming the list and the bad pattern. A host in both lists is intercepted.
  host_policy(const std::vector<std::string>& intercept, const std::vector<std::string>& tunnel,
              std::vector<std::uint16_t> allowed_ports);

  decision decide(std::string_view host, std::uint16_t port) const;
  // The same for a host normalize_host has already returned (not normalised again).
  decision decide_normal(std::string_view normalized_host, std::uint16_t port) const;
  // True when `host` matches an intercept_hosts pattern, whatever the port: the cleartext
  // refusal (issue 14) comes before the port check, so http://acme.okta.com/ is told why.
  bool intercepts(std::string_view host) const;
  // The intercept entries that name one host exactly (no wildcard), normalised.
  std::vector<std::string> exact_intercept_hosts() const;
  // The suffixes of the wildcard intercept entries ("okta.com" for "*.okta.com").
  std::vector<std::string> intercept_suffixes() const;

  // policy::normalize_host (host_pattern.hpp), for the callers that know it as a member.
  static std::optional<std::string> normalize_host(std::string_view host) {
    return policy::normalize_host(host);
  }

 private:
  bool port_ok(const host_pattern& p, std::uint16_t port) const;

  std::vector<host_pattern> intercept_;
  std::vector<host_pattern> tunnel_;
  std::vector<std::uint16_t> allowed_ports_;
};

}  // namespace okta_sidecar::policy
