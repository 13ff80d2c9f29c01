#include "okta_sidecar/proxy/probe_waiters.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace okta_sidecar::proxy {

void probe_waiters::wake(const std::string& host) {
  std::lock_guard lock(mu_);
  auto it = held_.find(host);
  if (it == held_.end()) return;
  // Each timer belongs to its session's loop: expire it there (like the pool's waiters), which
  // also wakes a waiter that has not started waiting yet.
  for (auto& t : it->second) asio::post(t->get_executor(), [t] { t->expires_at(time_point::min()); });
  held_.erase(it);
}

asio::awaitable<void> probe_waiters::wait(const std::string& host, time_point deadline) {
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

}  // namespace okta_sidecar::proxy
