#include "okta_sidecar/resilience/breaker_board.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace okta_sidecar::resilience {

permit breaker_board::try_acquire(const std::string& host, time_point now) {
  std::lock_guard lock(mu_);
  return breakers_.at(host, now).try_acquire(now);
}

void breaker_board::record(const std::string& host, outcome o, bool probe, time_point now) {
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
  breakers_.for_each([&](const std::string& host, const circuit_breaker& b) {
    auto st = b.state(now);
    duration retry_after{};
    if (st == breaker_state::open) {
      auto copy = b;  // try_acquire mutates; ask a copy how long is left
      retry_after = copy.try_acquire(now).retry_after;
    }
    out.push_back({host, st, retry_after, b.opened_count()});
  });
  return out;
}

void breaker_board::update_settings(const breaker_settings& b, const retry_settings& r) {
  std::lock_guard lock(mu_);
  breakers_.update_settings(b);
  budget_.update_settings(r);
}

std::size_t breaker_board::size() const {
  std::lock_guard lock(mu_);
  return breakers_.size();
}

}  // namespace okta_sidecar::resilience
