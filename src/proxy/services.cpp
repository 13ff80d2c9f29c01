#include "okta_sidecar/proxy/services.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace okta_sidecar::proxy {

resilience::permit breaker_board::try_acquire(const std::string& host, time_point now) {
  std::lock_guard lock(mu_);
  return breakers_.at(host, now).try_acquire(now);
}

void breaker_board::record(const std::string& host, resilience::outcome o, bool probe, time_point now) {
  std::lock_guard lock(mu_);
  breakers_.at(host, now).record(o, probe, now);
  if (probe) wake_locked(host);
}

void breaker_board::release_probe(const std::string& host, time_point now) {
  std::lock_guard lock(mu_);
  breakers_.at(host, now).release_probe(now);
  wake_locked(host);
}

void breaker_board::wake_locked(const std::string& host) {
  auto it = held_.find(host);
  if (it == held_.end()) return;
  // Each timer belongs to its session's strand: expire it there (like the pool's waiters), which
  // also wakes a waiter that has not started waiting yet.
  for (auto& t : it->second) asio::post(t->get_executor(), [t] { t->expires_at(time_point::min()); });
  held_.erase(it);
}

asio::awaitable<void> breaker_board::wait_for_probe(const std::string& host, time_point deadline) {
  auto t = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor, deadline);
  {
    std::lock_guard lock(mu_);
    held_[host].push_back(t);
  }
  co_await t->async_wait(asio::as_tuple(asio::use_awaitable));
  std::lock_guard lock(mu_);
  if (auto it = held_.find(host); it != held_.end()) {
    std::erase(it->second, t);
    if (it->second.empty()) held_.erase(it);
  }
}

void breaker_board::on_request(time_point now) {
  std::lock_guard lock(mu_);
  budget_.on_request(now);
}

bool breaker_board::try_spend_retry(time_point now) {
  std::lock_guard lock(mu_);
  return budget_.try_spend(now);
}

std::vector<breaker_board::host_state> breaker_board::states(time_point now) const {
  std::lock_guard lock(mu_);
  std::vector<host_state> out;
  breakers_.for_each([&](const std::string& host, const resilience::circuit_breaker& b) {
    auto st = b.state(now);
    duration retry_after{};
    if (st == resilience::breaker_state::open) {
      auto copy = b;  // try_acquire mutates; ask a copy how long is left
      retry_after = copy.try_acquire(now).retry_after;
    }
    out.push_back({host, st, retry_after, b.opened_count()});
  });
  return out;
}

void breaker_board::update_settings(const resilience::breaker_settings& b,
                                    const resilience::retry_settings& r) {
  std::lock_guard lock(mu_);
  breakers_.update_settings(b);
  budget_.update_settings(r);
}

std::size_t breaker_board::size() const {
  std::lock_guard lock(mu_);
  return breakers_.size();
}

void diagnosis_log::add(nlohmann::json entry) {
  std::lock_guard lock(mu_);
  entries_.push_back(std::move(entry));
  while (entries_.size() > capacity_) entries_.pop_front();
}

nlohmann::json diagnosis_log::snapshot() const {
  std::lock_guard lock(mu_);
  auto out = nlohmann::json::array();
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) out.push_back(*it);
  return out;
}

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
