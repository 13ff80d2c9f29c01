#include "okta_sidecar/resilience/settings.hpp"

namespace okta_sidecar::resilience {

breaker_settings to_breaker_settings(const config::circuit_breaker_config& c) {
  breaker_settings s;
  s.failure_threshold = c.failure_threshold;
  s.open_time = std::chrono::milliseconds(c.open_ms);
  s.max_open_time = std::chrono::milliseconds(c.max_open_ms);
  s.half_open_probes = c.half_open_probes;
  return s;  // the failure-rate window has no config key yet: off
}

retry_settings to_retry_settings(const config::retry_config& c) {
  retry_settings s;
  s.max_attempts = c.max_attempts;
  s.base_backoff = std::chrono::milliseconds(c.base_backoff_ms);
  s.max_backoff = std::chrono::milliseconds(c.max_backoff_ms);
  s.budget_fraction = c.budget_fraction;
  s.retry_on_timeout = c.on_timeout;
  return s;
}

}  // namespace okta_sidecar::resilience
