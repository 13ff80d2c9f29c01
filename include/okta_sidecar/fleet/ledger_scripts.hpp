#pragma once
// The Lua scripts that make Redis the fleet's ledger. Each runs atomically inside Redis (EVALSHA,
// loaded once per connection with SCRIPT LOAD), so two sidecars can never lease the same token.
// Time inside the scripts is Redis's own clock (TIME), so sidecar clock skew does not matter.
#include <string_view>

namespace okta_sidecar::fleet {

// KEYS[1] bucket hash. ARGV: want, has_obs (0|1), limit, remaining, reset_epoch, reset_in_ms,
// rejected (0|1), window_ms, probe_ms.
// Returns {granted, probe (0|1), limit|-1, left, reset_epoch|-1, reset_in_ms|-1, retry_in_ms}.
extern const std::string_view lease_script;

// KEYS[1] members zset, KEYS[2..] one in-flight hash per host. ARGV: sidecar id, ttl_ms, cap,
// then this sidecar's in-flight count per host (same order as KEYS[2..]).
// Returns {live sidecars, in-flight slots the others reserve on host 1, host 2, ...}.
extern const std::string_view heartbeat_script;

}  // namespace okta_sidecar::fleet
