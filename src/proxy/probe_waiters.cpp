#include "okta_sidecar/proxy/probe_waiters.hpp"

namespace okta_sidecar::proxy {

void probe_waiters::wake(const std::string& host) {
  std::lock_guard lock(mu_);
  auto it = held_.find(host);
  if (it == held_.end()) return;
  for (auto& spot : it->second) spot->wake();  // on its session's loop
  held_.erase(it);
}

probe_waiters::spot probe_waiters::hold(const std::string& host, asio::any_io_executor ex) {
  auto s = net::parking_spot<>::make(std::move(ex));
  std::lock_guard lock(mu_);
  held_[host].push_back(s);
  return s;
}

void probe_waiters::release(const std::string& host, const spot& s) {
  std::lock_guard lock(mu_);
  if (auto it = held_.find(host); it != held_.end()) {
    std::erase(it->second, s);
    if (it->second.empty()) held_.erase(it);
  }
}

}  // namespace okta_sidecar::proxy
