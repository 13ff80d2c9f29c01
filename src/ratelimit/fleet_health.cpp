#include "okta_sidecar/ratelimit/fleet_health.hpp"

namespace okta_sidecar::ratelimit {

const char* to_string(fleet_mode m) {
  switch (m) {
    case fleet_mode::local:
      return "local";
    case fleet_mode::shared:
      return "shared";
  }
  return "local";
}

const char* to_string(fallback_reason r) {
  switch (r) {
    case fallback_reason::none:
      return "none";
    case fallback_reason::down:
      return "down";
    case fallback_reason::slow:
      return "slow";
    case fallback_reason::error:
      return "error";
  }
  return "none";
}

void fleet_health::fall_back(fallback_reason why, time_point now) {
  streak_ = 0;
  reason_ = why;
  if (mode_ == fleet_mode::shared) {
    mode_ = fleet_mode::local;
    ++fallbacks_;
    since_ = now;
    changed_ = true;
  }
}

void fleet_health::on_answer(duration latency, time_point now) {
  if (latency > settings_.timeout) {
    fall_back(fallback_reason::slow, now);
    return;
  }
  ++streak_;
  if (mode_ == fleet_mode::local && streak_ >= std::max<std::uint32_t>(1, settings_.rejoin_after)) {
    mode_ = fleet_mode::shared;
    reason_ = fallback_reason::none;
    ++rejoins_;
    since_ = now;
    changed_ = true;
  }
}

void fleet_health::on_failure(fallback_reason why, time_point now) { fall_back(why, now); }

void fleet_health::check_outstanding(time_point sent, time_point now) {
  if (now - sent > settings_.timeout) fall_back(fallback_reason::slow, now);
}

bool fleet_health::take_changed() {
  const bool c = changed_;
  changed_ = false;
  return c;
}

}  // namespace okta_sidecar::ratelimit
