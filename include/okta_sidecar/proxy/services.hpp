#pragma once
// The object graph a session works with, built by the app and passed down by reference:
// no globals. Reloadable settings live in `runtime` behind an atomic shared_ptr.
#include <atomic>
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <memory>

#include "okta_sidecar/auth/diagnosis_log.hpp"
#include "okta_sidecar/auth/token_info.hpp"
#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/logging/log.hpp"
#include "okta_sidecar/metrics/label_bounds.hpp"
#include "okta_sidecar/metrics/registry.hpp"
#include "okta_sidecar/proxy/rate_gate.hpp"
#include "okta_sidecar/proxy/runtime.hpp"
#include "okta_sidecar/proxy/shared_reads.hpp"
#include "okta_sidecar/ratelimit/shared_okta_clock.hpp"
#include "okta_sidecar/resilience/breaker_board.hpp"
#include "okta_sidecar/tls/leaf_cache.hpp"
#include "okta_sidecar/upstream/connection_pool.hpp"

namespace okta_sidecar::proxy {

// Metric handles created once at start; hot paths use family::with() on these.
struct proxy_metrics {
  explicit proxy_metrics(metrics::registry& r);
  metrics::family<metrics::counter>& requests;            // host, bucket, status
  metrics::family<metrics::counter>& local_replies;       // reason
  metrics::family<metrics::counter>& upstream_responses;  // host, bucket, status
  metrics::family<metrics::counter>& upstream_429;        // host, bucket
  metrics::family<metrics::counter>& absorbed_429;        // host, bucket
  metrics::family<metrics::counter>& admissions;          // host, bucket, result
  metrics::family<metrics::histogram>& queue_wait;        // host, bucket
  metrics::family<metrics::histogram>& upstream_latency;  // host
  metrics::family<metrics::counter>& timeouts;            // kind
  metrics::family<metrics::counter>& retries;             // reason
  metrics::family<metrics::counter>& upstream_failures;   // host, kind
  metrics::family<metrics::counter>& breaker_rejections;  // host
  metrics::family<metrics::counter>& upstream_discards;   // reason
  metrics::family<metrics::counter>& auth_failures;       // reason
  metrics::family<metrics::counter>& client_connections;  // kind (plain|intercept|tunnel)
  metrics::family<metrics::gauge>& open_connections;      // (none)
  metrics::family<metrics::counter>& bytes;               // direction
  metrics::family<metrics::counter>& accept_paused;       // (none): times accepting paused at the cap
  // Host and bucket labels through `bounds` from now on (issue 14: bounded label sets).
  void bound_labels(metrics::label_bounds& bounds);
};

struct services {
  const clock_source& clock;
  const logging::log& log;
  tls::leaf_cache& leaves;
  asio::ssl::context& intercept_tls;
  upstream::connection_pool& pool;
  rate_gate& gate;
  resilience::breaker_board& breakers;
  proxy_metrics& metrics;
  auth::diagnosis_log& diagnoses;
  ratelimit::shared_okta_clock& okta_clock;
  shared_reads& reads;  // coalescing and the public-document cache (issue 15)
  std::atomic<std::shared_ptr<const runtime>> rt;
  std::atomic<bool> draining{false};
  std::atomic<std::uint64_t> next_request_id{1};
  // Keyed digest for token fingerprints and fairness keys (tls::fingerprint_key, issue 14).
  auth::credential_digest digest;
};

}  // namespace okta_sidecar::proxy
