#include "okta_sidecar/policy/admin_access.hpp"

#include <algorithm>

#include "okta_sidecar/http/ip_literal.hpp"
#include "okta_sidecar/http/target.hpp"
#include "okta_sidecar/http/text.hpp"

namespace okta_sidecar::policy {

bool is_probe_path(std::string_view path) {
  return path == "/healthz" || path == "/readyz" || path == "/metrics" || path == "/ca.crt" ||
         path == "/ca-bundle.pem";
}

namespace {

bool host_allowed(std::string_view host_header, const admin_access_settings& s) {
  if (host_header.empty()) return true;
  const auto hp = http::parse_host_header(host_header);
  if (!hp) return false;
  std::string_view host = hp->host;
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (http::parse_ip(host)) return true;
  if (host == "localhost") return true;
  return std::any_of(s.allowed_hosts.begin(), s.allowed_hosts.end(),
                     [&](const std::string& a) { return http::iequals(a, host); });
}

}  // namespace

admin_verdict decide_admin_access(std::string_view path, std::string_view host_header, bool peer_loopback,
                                  const admin_access_settings& s) {
  if (!host_allowed(host_header, s)) return admin_verdict::bad_host;
  if (!peer_loopback && !s.expose_status && !is_probe_path(path)) return admin_verdict::loopback_only;
  return admin_verdict::allow;
}

}  // namespace okta_sidecar::policy
