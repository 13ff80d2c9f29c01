#pragma once
// Conversions from the configuration's millisecond knobs (contract keys circuit_breaker.*
// and retry.*) to the resilience module's settings.
#include "okta_sidecar/config/config.hpp"
#include "okta_sidecar/resilience/circuit_breaker.hpp"
#include "okta_sidecar/resilience/retry_policy.hpp"

namespace okta_sidecar::resilience {

breaker_settings to_breaker_settings(const config::circuit_breaker_config& c);
retry_settings to_retry_settings(const config::retry_config& c);

}  // namespace okta_sidecar::resilience
