#include "okta_sidecar/policy/host_policy.hpp"

#include <algorithm>
#include <stdexcept>

namespace okta_sidecar::policy {

namespace {

host_pattern parse_or_throw(const std::string& text, const char* list) {
  std::string why;
  auto p = parse_host_pattern(text, &why);
  if (!p) throw std::runtime_error(std::string(list) + ": \"" + text + "\" " + why);
  return *std::move(p);
}

}  // namespace

host_policy::host_policy(const std::vector<std::string>& intercept, const std::vector<std::string>& tunnel,
                         std::vector<std::uint16_t> allowed_ports)
    : allowed_ports_(std::move(allowed_ports)) {
  for (const auto& s : intercept) intercept_.push_back(parse_or_throw(s, "intercept_hosts"));
  for (const auto& s : tunnel) tunnel_.push_back(parse_or_throw(s, "tunnel_hosts"));
}

bool host_policy::port_ok(const host_pattern& p, std::uint16_t port) const {
  if (p.port) return *p.port == port;
  return std::find(allowed_ports_.begin(), allowed_ports_.end(), port) != allowed_ports_.end();
}

bool host_policy::intercepts(std::string_view host) const {
  const auto h = normalize_host(host);
  if (!h) return false;
  return std::any_of(intercept_.begin(), intercept_.end(),
                     [&](const host_pattern& p) { return p.matches_host(*h); });
}

std::vector<std::string> host_policy::exact_intercept_hosts() const {
  std::vector<std::string> out;
  for (const auto& p : intercept_)
    if (!p.wildcard) out.push_back(p.host);
  return out;
}

std::vector<std::string> host_policy::intercept_suffixes() const {
  std::vector<std::string> out;
  for (const auto& p : intercept_)
    if (p.wildcard) out.push_back(p.host);
  return out;
}

decision host_policy::decide(std::string_view host, std::uint16_t port) const {
  const auto h = normalize_host(host);
  if (!h) return {route::refuse, "invalid or forbidden host name"};
  return decide_normal(*h, port);
}

decision host_policy::decide_normal(std::string_view normalized_host, std::uint16_t port) const {
  bool port_refused = false;
  for (const auto& [list, r] :
       {std::pair{&intercept_, route::intercept}, std::pair{&tunnel_, route::tunnel}}) {
    for (const auto& p : *list) {
      if (!p.matches_host(normalized_host)) continue;
      if (port_ok(p, port)) return {r, {}};
      port_refused = true;
    }
  }
  if (port_refused) return {route::refuse, "port " + std::to_string(port) + " not allowed"};
  return {route::refuse, "host not in intercept_hosts or tunnel_hosts"};
}

}  // namespace okta_sidecar::policy
