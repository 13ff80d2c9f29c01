#include "request_scope.hpp"

#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <cmath>
#include <random>

#include "okta_sidecar/http/redact.hpp"

namespace okta_sidecar::proxy::detail {
namespace {

std::string random_error_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string id = "sidecar";
  for (int i = 0; i < 18; ++i) id += alphabet[rng() % (sizeof(alphabet) - 1)];
  return id;
}

void access_log(conn_ctx& c, request_record& r) {
  const auto ms = std::chrono::duration<double, std::milli>(c.svc.clock.now() - r.started).count();
  series_of(c, r).requests(r.status).inc();
  if (!c.svc.log.enabled(spdlog::level::info)) return;
  // log.access_sample thins out the lines of requests that went well; anything the sidecar
  // answered itself, any status from 400 up and unanswered requests are always written.
  const bool failed = r.status == 0 || r.status >= 400 || !r.local_reason.empty();
  const double sample = c.rt->cfg.log.access_sample;
  if (!failed && sample < 1.0 && !(sample > 0.0 && random01() < sample)) return;
  logging::event e("access");
  e.with("conn", c.id)
      .with("req", r.id)
      .with("peer", c.peer)
      .with("method", r.method)
      .with("host", r.host)
      .with("path", http::redact_target(r.target))
      .with("bucket", r.bucket)
      .with("status", r.status)
      .with("bytes", r.bytes_out)
      .with("duration_ms", std::round(ms * 1000) / 1000)
      .with("attempts", r.attempts);
  if (!c.user.empty()) e.with("user", c.user);
  if (!r.trace_id.empty()) e.with("trace_id", r.trace_id);
  if (r.upstream_status) e.with("upstream_status", r.upstream_status);
  if (!r.local_reason.empty()) e.with("sidecar_error", r.local_reason);
  if (!r.error.empty()) e.with("error", r.error);
  if (!r.okta_request_id.empty()) e.with("okta_request_id", r.okta_request_id);
  if (r.queue_wait_ms > 0) e.with("queue_wait_ms", std::round(r.queue_wait_ms * 1000) / 1000);
  c.svc.log.info(e);
}

}  // namespace

asio::awaitable<bool> send_local(conn_ctx& c, net::stream& s, http::local_error err, std::string_view detail,
                                 request_record& rec, bool keep_alive, unsigned version,
                                 std::optional<std::int64_t> retry_after, const http::rate_limit_echo& echo,
                                 std::string_view diagnosis) {
  // A local 429 echoes Okta's X-Rate-Limit-Reset, which is on Okta's clock; the SDKs wait
  // reset - Date + 1 s (docs/okta-behaviour.md), so its Date must be on Okta's clock too, or a skewed
  // machine clock would make every SDK wait the skew longer (or not at all).
  const std::int64_t now_epoch = err == http::local_error::rate_limited
                                     ? c.svc.okta_clock.now_epoch(c.svc.clock.wall_now())
                                     : epoch_now(c.svc.clock);
  auto reply = http::make_local_reply(err, random_error_id(), detail, now_epoch, retry_after, echo);
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(reply.status),
                                          version == 10 ? 10u : 11u};
  for (auto& [k, v] : reply.headers) res.set(k, v);
  if (!diagnosis.empty()) res.set("X-Okta-Sidecar-Diagnosis", diagnosis);
  res.body() = std::move(reply.body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  // RFC 9110 §9.3.2: a response to HEAD has the GET's header fields and no content; a body here
  // would be read by a pipelining client as the start of its next response.
  if (rec.method == "HEAD") res.body().clear();
  rec.status = reply.status;
  rec.local_reason = reply.reason;
  rec.bytes_out += res.body().size();
  c.svc.metrics.local_reply(err).inc();
  s.expires_after(milliseconds(c.rt->cfg.client.idle_timeout_ms));
  auto [ec, n] = co_await bhttp::async_write(s, res, use_tuple);
  co_return !ec && keep_alive;
}

metrics::bucket_series& series_of(conn_ctx& c, request_record& r) {
  if (!r.series) r.series = &c.svc.metrics.per_bucket.of(r.host, r.bucket);
  return *r.series;
}

void request_scope::finish() {
  if (!begun_ || finished_) return;
  finished_ = true;
  access_log(c_, rec_);
}

}  // namespace okta_sidecar::proxy::detail
