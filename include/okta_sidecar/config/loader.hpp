#pragma once
// Turns JSON configuration text into a `config`, and checks a `config` as a whole. Every error
// is collected (not just the first) and names the full key path, so one --check-config run
// shows the user everything to fix.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "okta_sidecar/config/config.hpp"
#include "okta_sidecar/config/syntax.hpp"  // parse_endpoint and the other value syntaxes

namespace okta_sidecar::config {

// A configuration plus every problem found while building it; `cfg` is only meaningful when
// ok() (keys that failed keep their previous value).
struct parse_result {
  config cfg;
  std::vector<std::string> errors;

  bool ok() const { return errors.empty(); }
};

// Applies a JSON document on top of `base` (usually the defaults): keys present replace the
// base value (lists and `upstream.resolve` are replaced whole, sections merge key by key).
// Errors: JSON syntax ("<source>:LINE:COL: invalid JSON (byte N): ..."), duplicate keys,
// unknown keys (with a did-you-mean suggestion), wrong types and integers out of their type's
// range, each as "<key.path>: <problem>". Semantic ranges are validate()'s job.
parse_result parse_config(std::string_view json_text, std::string_view source_name, config base = {});

// Fills derived defaults: ca.cert_file / ca.key_file = <state_dir>/ca.crt|ca.key when empty.
void finalize(config& cfg);

// Cross-field and range checks on a whole config (after CLI/env overrides and finalize()).
// Returns one "<key.path>: <problem>" message per problem; empty means usable.
std::vector<std::string> validate(const config& cfg);

// Files the configuration names explicitly must exist: a ca.cert_file / ca.key_file other
// than the <state_dir> defaults that is missing is an error naming the key (only the default
// paths get a CA created on first start). One "<key>: <problem>" per problem.
std::vector<std::string> check_ca_files(const config& cfg);

enum class secrets { keep, redact };
// The config as JSON in the file format, keys in contract order; parse_config() of its dump
// gives back `cfg`. With secrets::redact, a password in fleet.redis becomes "****".
nlohmann::ordered_json to_json(const config& cfg, secrets mode);

// Every key path the file format knows ("listen", "rate_limit.max_wait_ms", "fleet.redis"...).
const std::vector<std::string>& known_key_paths();

}  // namespace okta_sidecar::config
