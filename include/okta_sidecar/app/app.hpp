#pragma once
// Builds the sidecar's object graph from a configuration and runs it until a clean shutdown.
#include <functional>

#include "okta_sidecar/config/config.hpp"
#include "okta_sidecar/config/loader.hpp"
#include "okta_sidecar/logging/log.hpp"

namespace okta_sidecar::app {

inline constexpr const char* version = "0.1.0";

// `reload` re-reads the configuration the way start-up did (SIGHUP). Returns the process exit
// code: 0 clean shutdown, 1 runtime failure (e.g. cannot listen, CA refused).
int run(const config::config& cfg, const logging::log& log, std::function<config::parse_result()> reload);

}  // namespace okta_sidecar::app
