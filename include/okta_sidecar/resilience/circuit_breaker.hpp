#pragma once
// Circuit breaker for one upstream host (or one bucket): a pure state machine driven by the
// caller's `now`. The I/O shell asks try_acquire() before touching the upstream and reports
// every attempt's outcome with record() (or release_probe() when a probe ends unanswered).
// Not thread-safe: the shell serialises calls (one strand or mutex per breaker).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "okta_sidecar/clock.hpp"

namespace okta_sidecar::resilience {

struct breaker_settings {
  std::uint32_t failure_threshold = 5;                 // consecutive failures that open
  duration open_time = std::chrono::seconds(30);       // first open period
  duration max_open_time = std::chrono::seconds(300);  // cap of the exponential growth
  std::uint32_t half_open_probes = 1;                  // concurrent probes while half-open
  std::uint32_t window_size = 0;  // optional failure-rate window over the last N calls (0 = off)
  double failure_rate = 0.5;      // open when failures/calls in the window reach this...
  std::uint32_t min_calls = 20;   // ...once the window holds at least this many calls
};

enum class breaker_state { closed, open, half_open };

// What one upstream attempt says about the host's health.
// neutral: Okta answered at the application level (4xx incl. 401/403/429, 501): never a
// failure (docs/okta-behaviour.md: 401/403 are the app's problem, a 429 is the rate limiter's).
enum class outcome { success, failure, neutral };

// 5xx except 501 -> failure; 4xx and 501 -> neutral; 1xx-3xx -> success. A status outside
// 100..599 is protocol garbage from the upstream and counts as a failure.
outcome classify_status(int status);

// Answer of try_acquire. When !allowed and !hold the shell answers 503 circuit_open with
// Retry-After = retry_after (rounded up to whole seconds). hold: the breaker is half-open and
// its probes are in flight; the shell waits for their outcome (bounded by the request's
// deadline) and asks again, instead of failing a request that the probe may soon let through.
// probe == true obliges the shell to report the attempt with record(..., was_probe = true,
// ...) or release_probe().
struct permit {
  bool allowed = true;
  bool probe = false;
  duration retry_after{};
  bool hold = false;
};

// Per-host breaker: closed -> open after failure_threshold consecutive failures (or the
// failure-rate window tripping); open answers at once; after the open time half-open lets
// half_open_probes probes through; a probe's success closes, its failure re-opens with the
// open time doubled up to max_open_time. Closing resets the growth.
class circuit_breaker {
 public:
  explicit circuit_breaker(breaker_settings settings);

  permit try_acquire(time_point now);
  void record(outcome result, bool was_probe, time_point now);
  void release_probe(time_point now);  // a probe ended without an outcome (client gone)

  // The state as of `now`: an open breaker whose open time has passed reports half_open
  // even before the next try_acquire moves it there.
  breaker_state state(time_point now) const;
  std::uint64_t opened_count() const { return opened_count_; }  // transitions into open
  std::uint64_t closed_count() const { return closed_count_; }  // transitions half_open -> closed

  // Reload (SIGHUP): keeps the current state; new thresholds apply from the next outcome,
  // an open period already running keeps its end, the failure-rate window starts afresh.
  void update_settings(const breaker_settings& settings);

  // For /status: when an open breaker will let a probe through; the open period in force.
  time_point open_until() const { return open_until_; }
  duration current_open_time() const { return current_open_time_; }

 private:
  void trip(time_point now, duration open_for);
  void close();
  void record_in_window(bool failed);
  bool window_tripped() const;
  void reset_window();

  breaker_settings settings_;
  breaker_state state_ = breaker_state::closed;
  std::uint32_t consecutive_failures_ = 0;
  std::uint32_t probes_in_flight_ = 0;
  time_point open_until_{};
  duration current_open_time_{};
  std::uint64_t opened_count_ = 0;
  std::uint64_t closed_count_ = 0;
  // Ring of the last window_size success/failure outcomes (true = failure).
  std::vector<bool> window_;
  std::size_t window_next_ = 0;
  std::size_t window_count_ = 0;
  std::size_t window_failures_ = 0;
};

const char* to_string(breaker_state state);
const char* to_string(outcome result);

}  // namespace okta_sidecar::resilience
