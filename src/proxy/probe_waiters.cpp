#include "okta_sidecar/proxy/probe_waiters.hpp"

#include <boost/asio/this_coro.hpp>

namespace okta_sidecar::proxy {

void probe_waiters::wake(const std::string& host) {
  std::lock_guard lock(mu_);
  auto it = held_.find(host);
  if (it == held_.end()) return;
  for (auto& spot : it->second) spot->wake();  // on its session's loop
  held_.erase(it);
}

asio::awaitable<void> probe_waiters::wait(const std::string& host, time_point deadline) {
  auto ex = co_await asio::this_coro::executor;
  auto spot = net::parking_spot<>::make(ex);
  {
    std::lock_guard lock(mu_);
    held_[host].push_back(spot);
  }
  co_await spot->wait(deadline);  // woken, due or cancelled: the caller asks the board again
  std::lock_guard lock(mu_);
  if (auto it = held_.find(host); it != held_.end()) {
    std::erase(it->second, spot);
    if (it->second.empty()) held_.erase(it);
  }
}

}  // namespace okta_sidecar::proxy
