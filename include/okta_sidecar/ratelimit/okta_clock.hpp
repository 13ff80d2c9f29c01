#pragma once
// Estimate of Okta's clock from Date headers (rate-limit resets, auth diagnostics of exp/iat).
#include <cstdint>
#include <optional>

#include "okta_sidecar/clock.hpp"

namespace okta_sidecar::ratelimit {

// Tracks okta - local wall-clock offset from the Date headers of upstream responses.
class okta_clock {
 public:
  void observe(std::int64_t server_date_epoch, wall_time received_at);
  std::optional<double> offset_seconds() const;           // okta - local; nullopt before any Date
  std::int64_t okta_now_epoch(wall_time wall_now) const;  // local wall clock corrected by offset (or as is)

 private:
  std::optional<double> offset_;
  std::int64_t samples_ = 0;
};

}  // namespace okta_sidecar::ratelimit
