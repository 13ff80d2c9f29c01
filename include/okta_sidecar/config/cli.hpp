#pragma once
// The command line and environment of okta-sidecar (docs/architecture.md, "Contract: command
// line"), and the one function that layers defaults <- file <- env <- CLI into a config.
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "okta_sidecar/config/loader.hpp"

namespace okta_sidecar::config {

// What the user asked for on the command line; unset = not given.
struct cli_options {
  std::optional<std::string> config_file, listen, admin_listen, state_dir, log_level, log_format;
  bool check_config = false, print_config = false, version = false, help = false;

  bool operator==(const cli_options&) const = default;
};

struct cli_result {
  cli_options options;
  std::vector<std::string> errors;  // "--lissten: unknown option (did you mean --listen?)"

  bool ok() const { return errors.empty(); }
};

// Accepts "--flag value" and "--flag=value", and -h for --help. A repeated flag keeps its
// last value (so wrappers can append overrides). A value may not start with "--": that is
// almost always a forgotten value ("--config --listen x").
cli_result parse_cli(std::span<const std::string_view> args /* without argv[0] */);
cli_result parse_cli(int argc, const char* const* argv /* with argv[0] */);

std::string usage_text();

// Looks an environment variable up; injected so tests need no real environment.
using env_lookup = std::function<std::optional<std::string>(std::string_view)>;
// The process environment (getenv).
env_lookup process_environment();

// Environment variable names; each has the same meaning as the flag of the same name.
inline constexpr std::string_view env_config = "OKTA_SIDECAR_CONFIG";
inline constexpr std::string_view env_listen = "OKTA_SIDECAR_LISTEN";
inline constexpr std::string_view env_admin_listen = "OKTA_SIDECAR_ADMIN_LISTEN";
inline constexpr std::string_view env_state_dir = "OKTA_SIDECAR_STATE_DIR";
inline constexpr std::string_view env_log_level = "OKTA_SIDECAR_LOG_LEVEL";
inline constexpr std::string_view env_log_format = "OKTA_SIDECAR_LOG_FORMAT";

// Builds the final config: defaults <- file (--config, else OKTA_SIDECAR_CONFIG; read here, a
// missing or unreadable file is an error naming the path) <- env <- CLI, then finalize() and
// validate(). An empty environment variable counts as unset. Errors from an override name
// its source ("--listen: ...", "OKTA_SIDECAR_LOG_LEVEL: ..."). Returns every error.
parse_result build_config(const cli_options& options, const env_lookup& env);

}  // namespace okta_sidecar::config
