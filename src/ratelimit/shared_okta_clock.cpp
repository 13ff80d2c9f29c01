#include "okta_sidecar/ratelimit/shared_okta_clock.hpp"

namespace okta_sidecar::ratelimit {

std::optional<double> shared_okta_clock::offset_bound(const std::string& host) const {
  std::lock_guard lock(mu_);
  auto it = bounds_.find(host);
  return it == bounds_.end() ? std::nullopt : it->second.seconds();
}

void shared_okta_clock::observe(const std::string& host, std::int64_t server_date_epoch,
                                wall_time received_at) {
  std::lock_guard lock(mu_);
  clock_.observe(server_date_epoch, received_at);
  auto it = bounds_.find(host);
  if (it == bounds_.end()) {
    if (bounds_.size() >= max_hosts) return;
    it = bounds_.emplace(host, okta_offset_bound{}).first;
  }
  it->second.observe(server_date_epoch, received_at);
}

std::int64_t shared_okta_clock::now_epoch(wall_time wall_now) const {
  std::lock_guard lock(mu_);
  return clock_.okta_now_epoch(wall_now);
}

}  // namespace okta_sidecar::ratelimit
