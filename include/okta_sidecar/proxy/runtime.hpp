#pragma once
// Everything a request needs that a SIGHUP reload may replace, built once per (re)load and
// shared read-only by every session through an atomic shared_ptr.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "okta_sidecar/auth/scope_table.hpp"
#include "okta_sidecar/config/config.hpp"
#include "okta_sidecar/http/request_validator.hpp"
#include "okta_sidecar/policy/cidr.hpp"
#include "okta_sidecar/policy/host_policy.hpp"
#include "okta_sidecar/policy/proxy_auth.hpp"
#include "okta_sidecar/ratelimit/classifier.hpp"
#include "okta_sidecar/ratelimit/scheduler.hpp"
#include "okta_sidecar/resilience/circuit_breaker.hpp"
#include "okta_sidecar/resilience/retry_policy.hpp"

namespace okta_sidecar::proxy {

struct runtime {
  config::config cfg;
  policy::host_policy hosts;
  ratelimit::classifier classifier;
  http::limits limits;
  policy::proxy_auth proxy_auth;
  policy::cidr_list clients;
  auth::scope_table scopes;
  ratelimit::scheduler_settings scheduler;
  resilience::breaker_settings breaker;
  resilience::retry_settings retry;
  std::vector<std::string> interactive_paths;

  // Throws std::runtime_error naming the file/key when a table or pattern is bad.
  static std::shared_ptr<const runtime> build(const config::config&);
  bool is_interactive(std::string_view normalized_path) const;
};

}  // namespace okta_sidecar::proxy
