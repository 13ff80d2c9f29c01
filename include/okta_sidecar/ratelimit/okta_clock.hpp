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

// A lower bound on one Okta host's clock offset (okta - local), for placing window resets.
// Okta's clock read at least `Date` when a response arrived (Date is truncated to the second),
// so okta - local >= Date - received for every response. The largest such bound over recent
// responses is within one response latency (plus whatever part of a second no sample happened
// to hit) of the true offset and never above it: a reset placed with it is never early, and
// with a few responses per second it is late by milliseconds instead of the up to 1 s a
// single Date gives. Samples age out after two minutes so that drift is followed; a sample
// more than `step_seconds` away from the bound means a clock was stepped, and restarts it.
class okta_offset_bound {
 public:
  static constexpr double step_seconds = 2.0;

  void observe(std::int64_t server_date_epoch, wall_time received_at);
  std::optional<double> seconds() const;  // nullopt before any Date

 private:
  struct slot {
    std::int64_t minute = 0;
    double bound = 0;
    bool set = false;
  };
  slot current_, previous_;
};

}  // namespace okta_sidecar::ratelimit
