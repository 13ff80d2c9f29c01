#pragma once
// The object graph a session works with, built by the app and passed down by reference:
// no globals. Reloadable settings live in `runtime` behind an atomic shared_ptr.
#include <array>
#include <atomic>
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <memory>

#include "okta_sidecar/auth/diagnosis_log.hpp"
#include "okta_sidecar/auth/token_info.hpp"
#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/http/local_reply.hpp"
#include "okta_sidecar/logging/log.hpp"
#include "okta_sidecar/metrics/label_bounds.hpp"
#include "okta_sidecar/metrics/registry.hpp"
#include "okta_sidecar/metrics/request_series.hpp"
#include "okta_sidecar/proxy/probe_waiters.hpp"
#include "okta_sidecar/proxy/rate_gate.hpp"
#include "okta_sidecar/proxy/runtime.hpp"
#include "okta_sidecar/proxy/shared_reads.hpp"
#include "okta_sidecar/ratelimit/shared_okta_clock.hpp"
#include "okta_sidecar/resilience/breaker_board.hpp"
#include "okta_sidecar/tls/leaf_cache.hpp"
#include "okta_sidecar/upstream/connection_pool.hpp"

namespace okta_sidecar::proxy {

// Metric families created once at start. The request path does not call family::with(): it
// updates series resolved once, per (host, bucket) through `per_bucket` and the fixed-label
// ones below on first use (issue 13: a request is a handful of atomic adds).
struct proxy_metrics {
  explicit proxy_metrics(metrics::registry& r);
  proxy_metrics(const proxy_metrics&) = delete;
  proxy_metrics& operator=(const proxy_metrics&) = delete;
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

  metrics::request_series per_bucket;
  metrics::counter& local_reply(http::local_error e) {
    return local_reply_series_[static_cast<std::size_t>(e)]->get();
  }
  using lazy_counter = metrics::lazy_series<metrics::counter>;
  lazy_counter timeout_client_header{timeouts, {"client_header"}};
  lazy_counter timeout_client_body{timeouts, {"client_body"}};
  lazy_counter timeout_connect{timeouts, {"connect"}};
  lazy_counter timeout_tls_handshake{timeouts, {"tls_handshake"}};
  lazy_counter timeout_response_headers{timeouts, {"response_headers"}};
  lazy_counter timeout_upstream_body_idle{timeouts, {"upstream_body_idle"}};
  lazy_counter timeout_upstream_body_error{timeouts, {"upstream_body_error"}};
  lazy_counter retried{retries, {resilience::retry_reason::retry}};
  lazy_counter discard_unread_bytes{upstream_discards, {"unread_bytes"}};
  lazy_counter bytes_downstream{bytes, {"downstream"}};
  lazy_counter connections_proxy{client_connections, {"proxy"}};
  lazy_counter connections_tunnel{client_connections, {"tunnel"}};
  lazy_counter connections_intercept{client_connections, {"intercept"}};
  lazy_counter connections_intercept_plain{client_connections, {"intercept_plain"}};
  metrics::gauge& open_now;             // open_connections, which has no labels
  metrics::counter& accept_paused_now;  // accept_paused, likewise

 private:
  std::array<std::unique_ptr<lazy_counter>, http::local_error_count> local_reply_series_;
};

// The runtime a reload swaps in. std::atomic<shared_ptr>::load is a spin lock and two
// reference-count updates on a cache line every worker shares; a request asks only whether the
// generation moved (one plain load) and keeps its connection's copy when it has not.
class current_runtime {
 public:
  std::shared_ptr<const runtime> load() const { return rt_.load(); }
  void store(std::shared_ptr<const runtime> r) {
    rt_.store(std::move(r));
    gen_.fetch_add(1, std::memory_order_release);
  }
  // Read before load(), the generation is never newer than the runtime loaded after it.
  std::uint64_t generation() const { return gen_.load(std::memory_order_acquire); }
  // `held` becomes the current runtime when one was stored after the generation `seen`.
  void refresh(std::shared_ptr<const runtime>& held, std::uint64_t& seen) const {
    const auto g = generation();
    if (g == seen && held) return;
    held = rt_.load();
    seen = g;
  }

 private:
  std::atomic<std::shared_ptr<const runtime>> rt_;
  std::atomic<std::uint64_t> gen_{0};
};

struct services {
  const clock_source& clock;
  const logging::log& log;
  tls::leaf_cache& leaves;
  asio::ssl::context& intercept_tls;
  upstream::connection_pool& pool;
  rate_gate& gate;
  resilience::breaker_board& breakers;
  probe_waiters& held_for_probe;  // woken by `breakers` when a half-open probe reports
  proxy_metrics& metrics;
  auth::diagnosis_log& diagnoses;
  ratelimit::shared_okta_clock& okta_clock;
  shared_reads& reads;  // coalescing and the public-document cache (issue 15)
  current_runtime rt;
  std::atomic<bool> draining{false};
  std::atomic<std::uint64_t> next_request_id{1};
  // Keyed digest for token fingerprints and fairness keys (tls::fingerprint_key, issue 14).
  auth::credential_digest digest;
};

}  // namespace okta_sidecar::proxy
