#include "okta_sidecar/proxy/rate_gate.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>

namespace okta_sidecar::proxy {

rate_gate::rate_gate(asio::io_context& ioc, ratelimit::scheduler_settings s, const clock_source& clock,
                     std::unique_ptr<ratelimit::bucket_store> store)
    : clock_(clock),
      scheduler_(std::move(s), std::move(store)),
      timer_strand_(asio::make_strand(ioc)),
      wake_timer_(timer_strand_) {}

rate_gate::submitted rate_gate::submit(const ratelimit::admission_request& req, asio::any_io_executor ex) {
  std::lock_guard lock(mu_);
  const auto now = clock_.now();
  const auto v = scheduler_.submit(req, now);
  submitted out;
  switch (v.kind) {
    case ratelimit::verdict_kind::admit:
      out.res = result{outcome::admitted, v.id, {}};
      break;
    case ratelimit::verdict_kind::reject:
      out.res = result{outcome::rejected, v.id, v.retry_after};
      break;
    case ratelimit::verdict_kind::queue:
      // Registered under the same lock as the submit, so no verdict can slip past it.
      out.parked = waiter::make(std::move(ex));
      waiters_.emplace(v.id, out.parked);
      out.res = result{outcome::queued, v.id, {}};
      break;
  }
  pump_locked(now);
  return out;
}

std::string rate_gate::bucket_name(const std::string& host, const ratelimit::classification& cls) {
  if (!cls.instance) return cls.bucket;
  std::lock_guard lock(mu_);
  return scheduler_.bucket_name(host, cls.group, cls.bucket, true, clock_.now());
}

asio::awaitable<rate_gate::result> rate_gate::wait(const submitted& s) {
  if (s.res.kind != outcome::queued) co_return s.res;
  co_return co_await wait_again(s.res.id, s.parked);
}

asio::awaitable<rate_gate::result> rate_gate::wait_again(ratelimit::ticket id, std::shared_ptr<waiter> w) {
  auto verdict = co_await w->wait();
  if (verdict) co_return *verdict;
  cancel(id);  // no deadline: the awaiting operation was cancelled (the client went away)
  co_return result{outcome::cancelled, id, {}};
}

void rate_gate::finish_locked(ratelimit::ticket id, outcome kind, duration retry_after) {
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return;
  it->second->wake(result{kind, id, retry_after});
  waiters_.erase(it);
}

void rate_gate::pump_locked(time_point now) {
  auto wake = scheduler_.poll(now);
  for (auto id : wake.admitted) finish_locked(id, outcome::admitted, {});
  for (auto [id, retry_after] : wake.rejected) finish_locked(id, outcome::rejected, retry_after);
  const auto next = wake.next_wake.value_or(time_point::max());
  if (next != armed_for_) {
    armed_for_ = next;
    asio::post(timer_strand_, [this, next] {
      wake_timer_.expires_at(next);
      wake_timer_.async_wait([this, next](boost::system::error_code ec) {
        if (ec) return;
        std::lock_guard lock(mu_);
        if (armed_for_ == next) armed_for_ = time_point::max();
        pump_locked(clock_.now());
      });
    });
  }
}

rate_gate::responded rate_gate::on_response(ratelimit::ticket id, int status,
                                            const ratelimit::observation& obs, bool per_principal,
                                            asio::any_io_executor ex) {
  std::lock_guard lock(mu_);
  const auto now = clock_.now();
  responded out{scheduler_.on_response(id, status, obs, per_principal, now), nullptr};
  if (out.decision.kind == ratelimit::response_kind::requeued) {
    out.parked = waiter::make(std::move(ex));
    waiters_.emplace(id, out.parked);
  }
  pump_locked(now);
  return out;
}

void rate_gate::on_failure(ratelimit::ticket id) {
  std::lock_guard lock(mu_);
  const auto now = clock_.now();
  scheduler_.on_failure(id, now);
  pump_locked(now);
}

void rate_gate::cancel(ratelimit::ticket id) {
  std::lock_guard lock(mu_);
  const auto now = clock_.now();
  waiters_.erase(id);
  scheduler_.cancel(id, now);
  pump_locked(now);
}

ratelimit::last_seen rate_gate::last(const ratelimit::bucket_key& k) const {
  std::lock_guard lock(mu_);
  return scheduler_.last(k);
}

std::vector<ratelimit::bucket_status> rate_gate::buckets() const {
  std::lock_guard lock(mu_);
  return scheduler_.buckets(clock_.now());
}

std::vector<ratelimit::host_status> rate_gate::hosts() const {
  std::lock_guard lock(mu_);
  return scheduler_.hosts();
}

std::size_t rate_gate::queued() const {
  std::lock_guard lock(mu_);
  return scheduler_.queued_total();
}

std::size_t rate_gate::bucket_count() const {
  std::lock_guard lock(mu_);
  return scheduler_.bucket_count();
}

void rate_gate::update_settings(const ratelimit::scheduler_settings& s) {
  std::lock_guard lock(mu_);
  scheduler_.update_settings(s);
  pump_locked(clock_.now());
}

void rate_gate::drain() {
  std::lock_guard lock(mu_);
  for (auto id : scheduler_.drain_all()) finish_locked(id, outcome::rejected, seconds(1));
}

}  // namespace okta_sidecar::proxy
