#include "okta_sidecar/proxy/services.hpp"

namespace okta_sidecar::proxy {

proxy_metrics::proxy_metrics(metrics::registry& r)
    : requests(r.add_counter("okta_sidecar_requests_total",
                             "Requests answered to clients, by upstream host, bucket and status",
                             {"host", "bucket", "status"})),
      local_replies(r.add_counter("okta_sidecar_local_replies_total",
                                  "Responses produced by the sidecar itself, by reason", {"reason"})),
      upstream_responses(r.add_counter("okta_sidecar_upstream_responses_total",
                                       "Response heads received from upstream",
                                       {"host", "bucket", "status"})),
      upstream_429(r.add_counter("okta_sidecar_upstream_429_total", "429 responses received from upstream",
                                 {"host", "bucket"})),
      absorbed_429(r.add_counter("okta_sidecar_absorbed_429_total",
                                 "Upstream 429s retried transparently instead of reaching the client",
                                 {"host", "bucket"})),
      admissions(r.add_counter("okta_sidecar_admissions_total",
                               "Rate-limit admission results (admitted, rejected, cancelled)",
                               {"host", "bucket", "result"})),
      queue_wait(r.add_histogram("okta_sidecar_queue_wait_seconds", "Time requests waited for admission",
                                 metrics::latency_bounds_seconds(), {"host", "bucket"})),
      upstream_latency(r.add_histogram("okta_sidecar_upstream_latency_seconds",
                                       "Time from request start to upstream response head",
                                       metrics::latency_bounds_seconds(), {"host"})),
      timeouts(r.add_counter("okta_sidecar_timeouts_total", "Timeouts by kind", {"kind"})),
      retries(r.add_counter("okta_sidecar_retries_total", "Failure retries by reason", {"reason"})),
      upstream_failures(r.add_counter("okta_sidecar_upstream_failures_total",
                                      "Upstream failures without a response", {"host", "kind"})),
      breaker_rejections(r.add_counter("okta_sidecar_breaker_rejections_total",
                                       "Requests answered 503 circuit_open", {"host"})),
      upstream_discards(r.add_counter(
          "okta_sidecar_upstream_connections_discarded_total",
          "Upstream connections closed instead of reused because bytes were left after a response",
          {"reason"})),
      auth_failures(r.add_counter("okta_sidecar_auth_failures_total",
                                  "Upstream 401/403 responses (and local token rejections) by diagnosis",
                                  {"reason"})),
      client_connections(r.add_counter("okta_sidecar_client_connections_total",
                                       "Client connections and tunnels by kind", {"kind"})),
      open_connections(r.add_gauge("okta_sidecar_client_connections_open", "Client connections open now")),
      bytes(r.add_counter("okta_sidecar_response_bytes_total", "Response body bytes relayed", {"direction"})),
      accept_paused(r.add_counter("okta_sidecar_accept_paused_total",
                                  "Times the proxy stopped accepting at client.max_connections")),
      per_bucket(metrics::request_families{requests, upstream_responses, upstream_429, absorbed_429,
                                           admissions, queue_wait, upstream_latency, breaker_rejections}),
      open_now(open_connections.with({})),
      accept_paused_now(accept_paused.with({})) {
  for (std::size_t i = 0; i < http::local_error_count; ++i) {
    const auto reason = http::reason_of(static_cast<http::local_error>(i));
    local_reply_series_[i] = std::make_unique<lazy_counter>(local_replies, std::vector{std::string(reason)});
  }
}

void proxy_metrics::bound_labels(metrics::label_bounds& bounds) {
  auto host_bucket = [&bounds](std::vector<std::string>& v) {
    auto [h, b] = bounds.host_bucket(v[0], v[1]);
    v[0] = std::move(h);
    v[1] = std::move(b);
  };
  auto host_only = [&bounds](std::vector<std::string>& v) { v[0] = bounds.host(v[0]); };
  for (auto* f : {&requests, &upstream_responses, &upstream_429, &absorbed_429, &admissions})
    f->set_label_mapper(host_bucket);
  queue_wait.set_label_mapper(host_bucket);
  upstream_latency.set_label_mapper(host_only);
  upstream_failures.set_label_mapper(host_only);
  breaker_rejections.set_label_mapper(host_only);
  per_bucket.bound_labels(bounds);
}

}  // namespace okta_sidecar::proxy
