#pragma once
// Okta's clock as every session sees it: the pure okta_clock / okta_offset_bound estimators
// behind one mutex, fed from each response's Date header.
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/ratelimit/okta_clock.hpp"

namespace okta_sidecar::ratelimit {

// Okta's clock as estimated from Date headers: the smoothed estimate auth diagnostics read,
// and each host's offset bound that places rate-limit resets.
class shared_okta_clock {
 public:
  static constexpr std::size_t max_hosts = 1024;  // hosts are allowlisted; this only bounds memory

  // The host's bound before this response (what the response's headers are read with).
  std::optional<double> offset_bound(const std::string& host) const;
  void observe(const std::string& host, std::int64_t server_date_epoch, wall_time received_at);
  std::int64_t now_epoch(wall_time wall_now) const;

 private:
  mutable std::mutex mu_;
  okta_clock clock_;
  std::unordered_map<std::string, okta_offset_bound> bounds_;
};

}  // namespace okta_sidecar::ratelimit
