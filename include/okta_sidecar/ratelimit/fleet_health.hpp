#pragma once
// When a fleet sidecar trusts Redis and when it falls back to local mode (pure; fake-clock
// tested). Redis is a helper, never a dependency of the data path: one slow or failed answer is
// enough to leave (a request must not wait on it), and only a run of healthy answers brings the
// sidecar back, so a flapping Redis does not make the fleet flap with it.
#include <cstdint>
#include <string>

#include "okta_sidecar/clock.hpp"

namespace okta_sidecar::ratelimit {

enum class fleet_mode {
  local,   // not (yet) trusted: conservative share of each bucket, decided here
  shared,  // budgets leased from Redis
};

enum class fallback_reason { none, down, slow, error };

const char* to_string(fleet_mode);
const char* to_string(fallback_reason);

struct fleet_health_settings {
  duration timeout = std::chrono::milliseconds(50);  // an answer slower than this is a failure
  std::uint32_t rejoin_after = 3;                    // healthy answers in a row to (re)join
};

// The fallback decision: fed every Redis outcome, answers which mode to run in.
class fleet_health {
 public:
  explicit fleet_health(fleet_health_settings s = {}) : settings_(s) {}

  // A Redis answer arrived `latency` after its request was sent.
  void on_answer(duration latency, time_point now);
  // The connection failed or closed, or Redis answered with an error we cannot use.
  void on_failure(fallback_reason why, time_point now);
  // A request has been outstanding since `sent`: past the timeout it counts as slow at once,
  // without waiting for the answer (which may never come).
  void check_outstanding(time_point sent, time_point now);

  fleet_mode mode() const { return mode_; }
  fallback_reason last_reason() const { return reason_; }
  std::uint64_t fallbacks() const { return fallbacks_; }  // shared -> local transitions
  std::uint64_t rejoins() const { return rejoins_; }
  std::uint32_t healthy_streak() const { return streak_; }
  time_point since() const { return since_; }  // last mode change
  // True once after every mode change (the shell logs it); cleared by the call.
  bool take_changed();
  void update_settings(const fleet_health_settings& s) { settings_ = s; }

 private:
  void fall_back(fallback_reason why, time_point now);

  fleet_health_settings settings_;
  fleet_mode mode_ = fleet_mode::local;
  fallback_reason reason_ = fallback_reason::down;  // nothing heard from Redis yet
  std::uint32_t streak_ = 0;
  std::uint64_t fallbacks_ = 0;
  std::uint64_t rejoins_ = 0;
  time_point since_{};
  bool changed_ = false;
};

}  // namespace okta_sidecar::ratelimit
