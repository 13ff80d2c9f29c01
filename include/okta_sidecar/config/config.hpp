#pragma once
// The sidecar's whole configuration, as parsed from JSON + CLI flags. The key names and
// defaults are a contract (docs/architecture.md, "Contract: configuration").
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace okta_sidecar::config {

// The largest request or response head (and chunked trailer) a connection buffers: Beast keeps
// a field in at most 64 KiB, so client.max_header_bytes may not exceed it.
inline constexpr std::uint64_t max_head_bytes = 64 * 1024;

// "host:port" split; host may be a bracketed IPv6 literal in the text form.
struct endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string to_string() const;  // "host:port" or "[v6]:port"
  bool operator==(const endpoint&) const = default;
};

struct ca_config {
  std::string cert_file;  // default "<state_dir>/ca.crt"
  std::string key_file;   // default "<state_dir>/ca.key"
  // Explicit paths that do not exist are a configuration error unless this says to create
  // them (a container whose CA certificate goes to a shared volume); the defaults always are.
  bool create_if_missing = false;

  bool operator==(const ca_config&) const = default;
};

struct upstream_config {
  std::optional<std::string> trust_file;
  std::map<std::string, endpoint> resolve;  // "acme.okta.com:443" -> 127.0.0.1:8443
  std::uint32_t connect_timeout_ms = 5000;
  std::uint32_t tls_handshake_timeout_ms = 5000;
  std::uint32_t response_timeout_ms = 30000;
  std::uint32_t idle_timeout_ms = 60000;  // pooled idle connection life; also body idle
  std::uint32_t max_connections_per_host = 64;
  bool insecure_skip_verify = false;  // loud, explicit; never a default

  bool operator==(const upstream_config&) const = default;
};

struct rate_limit_config {
  std::uint32_t max_wait_ms = 60000;
  std::uint32_t max_queue = 10000;        // per bucket
  std::uint32_t max_queue_total = 10000;  // all buckets together (issue 14: bounded state)
  std::uint32_t max_concurrency = 75;
  // Distinct {authServerId} bucket instances per host; further ids share one overflow bucket.
  std::uint32_t max_auth_servers_per_host = 64;
  // Seed of the adaptive in-flight cap: the smallest org concurrency limit Okta publishes (15),
  // so the first burst cannot trip any org's limit; it grows from there (README).
  std::uint32_t initial_concurrency = 15;
  bool coalesce = true;                  // identical concurrent GET/HEAD share one upstream request
  std::uint32_t capacity_percent = 100;  // at most this share of every bucket's limit per window
  double reserve_fraction = 0.0;
  std::optional<std::string> buckets_file;  // empty = built-in table
  std::vector<std::string> interactive_paths = {"/oauth2/*/v1/token", "/oauth2/v1/token",
                                                "/oauth2/*/v1/authorize", "/oauth2/v1/authorize",
                                                "/api/v1/authn*"};

  bool operator==(const rate_limit_config&) const = default;
};

// The cache of Okta's public documents (signing keys, discovery).
struct cache_config {
  bool enabled = true;
  std::uint32_t stale_if_error_s = 86400;  // served stale this long while Okta errs or is away

  bool operator==(const cache_config&) const = default;
};

struct circuit_breaker_config {
  std::uint32_t failure_threshold = 5;
  std::uint32_t open_ms = 30000;
  std::uint32_t max_open_ms = 300000;
  std::uint32_t half_open_probes = 1;

  bool operator==(const circuit_breaker_config&) const = default;
};

struct retry_config {
  std::uint32_t max_attempts = 3;
  std::uint32_t base_backoff_ms = 100;
  std::uint32_t max_backoff_ms = 2000;
  double budget_fraction = 0.2;
  bool on_timeout = false;  // retry a try that timed out waiting for its response head

  bool operator==(const retry_config&) const = default;
};

struct auth_config {
  bool reject_expired_locally = false;

  bool operator==(const auth_config&) const = default;
};

struct fleet_config {
  std::string redis;  // redis://host:port/db
  std::string key_prefix = "okta-sidecar:";
  std::uint32_t lease_size = 5;
  std::uint32_t timeout_ms = 50;
  std::uint32_t expected_replicas = 1;
  double fallback_share = 0.0;  // share of each bucket while Redis is away; 0 = 1/expected_replicas

  bool operator==(const fleet_config&) const = default;
};

struct log_config {
  std::string level = "info";   // trace|debug|info|warn|error
  std::string format = "json";  // json|text
  double access_sample = 1.0;   // share of successful requests written to the access log; errors always

  bool operator==(const log_config&) const = default;
};

struct client_config {
  std::uint32_t header_timeout_ms = 10000;    // slow-loris guard for each request head
  std::uint32_t idle_timeout_ms = 60000;      // keep-alive idle between requests
  std::uint32_t request_timeout_ms = 120000;  // total per request, queue wait included
  std::uint32_t drain_timeout_ms = 30000;     // SIGTERM: how long in-flight work may finish
  std::uint64_t max_header_bytes = 64 * 1024;
  std::uint32_t max_header_count = 100;
  std::uint64_t max_body_bytes = 64ull * 1024 * 1024;
  std::uint64_t max_buffered_body_bytes = 1024 * 1024;  // bodies up to this are kept for retries
  std::uint32_t max_connections = 4096;                 // open client connections; accepting pauses here

  bool operator==(const client_config&) const = default;
};

// Who may use the proxy and where it may go (issue: security). Destinations are decided by
// intercept_hosts / tunnel_hosts; these keys narrow further.
struct access_config {
  std::optional<std::string> proxy_auth_file;        // lines "user:password"; set = auth required
  std::optional<std::string> proxy_auth_env;         // name of an env var holding "user:password"
  std::vector<std::string> allowed_clients;          // source CIDRs; empty = anyone who can connect
  std::vector<std::uint16_t> allowed_ports = {443};  // CONNECT / absolute-form ports
  bool allow_cleartext = false;                      // http:// or plaintext-in-CONNECT to intercept hosts
  bool allow_private_destinations = false;           // resolved link-local/metadata/private addresses

  bool operator==(const access_config&) const = default;
};

// Who may read what on admin_listen (issue 14). /healthz, /readyz, /metrics and /ca.crt are
// for probes and scrapers; /status, the dashboard and config dumps show client ids and paths.
struct admin_config {
  bool expose_status = false;              // true: non-loopback peers may read /status, / and /config
  std::vector<std::string> allowed_hosts;  // Host header names accepted besides IP literals and localhost

  bool operator==(const admin_config&) const = default;
};

struct config {
  endpoint listen{"127.0.0.1", 3128};
  endpoint admin_listen{"127.0.0.1", 9901};
  std::string state_dir = "./var";
  std::uint32_t threads = 0;  // 0 = one per core
  std::vector<std::string> intercept_hosts = {"*.okta.com", "*.oktapreview.com", "*.okta-emea.com",
                                              "*.okta-gov.com"};
  std::vector<std::string> tunnel_hosts;
  ca_config ca;
  upstream_config upstream;
  rate_limit_config rate_limit;
  cache_config cache;
  circuit_breaker_config circuit_breaker;
  retry_config retry;
  auth_config auth;
  std::optional<fleet_config> fleet;
  log_config log;
  client_config client;
  access_config access;
  admin_config admin;

  bool operator==(const config&) const = default;
};

}  // namespace okta_sidecar::config
