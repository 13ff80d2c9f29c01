#include "okta_sidecar/resilience/circuit_breaker.hpp"

#include <algorithm>

namespace okta_sidecar::resilience {

namespace {

// While every probe slot is taken the outcome is at most one response time away, so callers
// are told to come back soon rather than after a whole open period.
constexpr duration half_open_busy_retry_after = std::chrono::seconds(1);

std::uint32_t effective_threshold(const breaker_settings& s) {
  // 0 would open on no failure at all; config validation rejects it, this keeps it sane.
  return std::max<std::uint32_t>(1, s.failure_threshold);
}

std::uint32_t effective_probes(const breaker_settings& s) {
  // With no probe slot a half-open breaker could never close again.
  return std::max<std::uint32_t>(1, s.half_open_probes);
}

duration effective_cap(const breaker_settings& s) { return std::max(s.open_time, s.max_open_time); }

}  // namespace

outcome classify_status(int status) {
  if (status < 100 || status > 599) return outcome::failure;
  if (status >= 500) return status == 501 ? outcome::neutral : outcome::failure;
  if (status >= 400) return outcome::neutral;
  return outcome::success;
}

circuit_breaker::circuit_breaker(breaker_settings settings)
    : settings_(settings), current_open_time_(settings.open_time), window_(settings.window_size) {}

permit circuit_breaker::try_acquire(time_point now) {
  switch (state_) {
    case breaker_state::closed:
      return permit{};
    case breaker_state::open:
      if (now < open_until_) return permit{false, false, open_until_ - now};
      state_ = breaker_state::half_open;
      probes_in_flight_ = 0;
      [[fallthrough]];
    case breaker_state::half_open:
      if (probes_in_flight_ < effective_probes(settings_)) {
        ++probes_in_flight_;
        return permit{true, true, duration{}};
      }
      return permit{false, false, half_open_busy_retry_after, true};
  }
  return permit{};
}

void circuit_breaker::record(outcome result, bool was_probe, time_point now) {
  switch (state_) {
    case breaker_state::closed:
      // A probe that finishes after another probe already closed the breaker is evidence
      // like any other request's.
      if (result == outcome::neutral) return;  // neither proves nor disproves health
      if (result == outcome::success) {
        consecutive_failures_ = 0;
        record_in_window(false);
        return;
      }
      ++consecutive_failures_;
      record_in_window(true);
      if (consecutive_failures_ >= effective_threshold(settings_) || window_tripped()) {
        trip(now, settings_.open_time);
      }
      return;
    case breaker_state::open:
      // Late answers of requests admitted before the breaker opened: the open period (and a
      // later probe) decides, not traffic that was already in flight.
      return;
    case breaker_state::half_open:
      if (!was_probe) return;  // admitted before the trip; only probes decide
      if (probes_in_flight_ > 0) --probes_in_flight_;
      // A neutral probe answer (a 404, 401 or 429) still shows Okta answering at the
      // application level, so it closes the breaker; otherwise a probe that happens to hit
      // a missing resource would keep the host half-open forever.
      if (result == outcome::failure) {
        trip(now, std::min(effective_cap(settings_), current_open_time_ * 2));
      } else {
        close();
      }
      return;
  }
}

void circuit_breaker::release_probe(time_point /*now*/) {
  if (state_ == breaker_state::half_open && probes_in_flight_ > 0) --probes_in_flight_;
}

breaker_state circuit_breaker::state(time_point now) const {
  if (state_ == breaker_state::open && now >= open_until_) return breaker_state::half_open;
  return state_;
}

void circuit_breaker::update_settings(const breaker_settings& settings) {
  settings_ = settings;
  current_open_time_ = std::clamp(current_open_time_, settings_.open_time, effective_cap(settings_));
  window_.assign(settings_.window_size, false);
  reset_window();
}

void circuit_breaker::trip(time_point now, duration open_for) {
  state_ = breaker_state::open;
  current_open_time_ = open_for;
  open_until_ = now + open_for;
  probes_in_flight_ = 0;
  consecutive_failures_ = 0;
  reset_window();
  ++opened_count_;
}

void circuit_breaker::close() {
  state_ = breaker_state::closed;
  current_open_time_ = settings_.open_time;  // the next outage starts from the short period again
  probes_in_flight_ = 0;
  consecutive_failures_ = 0;
  reset_window();
  ++closed_count_;
}

void circuit_breaker::record_in_window(bool failed) {
  if (window_.empty()) return;
  if (window_count_ == window_.size()) {
    if (window_[window_next_]) --window_failures_;
  } else {
    ++window_count_;
  }
  window_[window_next_] = failed;
  if (failed) ++window_failures_;
  window_next_ = (window_next_ + 1) % window_.size();
}

bool circuit_breaker::window_tripped() const {
  if (window_.empty() || window_count_ == 0) return false;
  // A min_calls above the window size would make the window unable to ever trip.
  const std::size_t min_calls = std::clamp<std::size_t>(settings_.min_calls, 1, window_.size());
  if (window_count_ < min_calls) return false;
  return static_cast<double>(window_failures_) >= settings_.failure_rate * static_cast<double>(window_count_);
}

void circuit_breaker::reset_window() {
  std::fill(window_.begin(), window_.end(), false);
  window_next_ = 0;
  window_count_ = 0;
  window_failures_ = 0;
}

const char* to_string(breaker_state state) {
  switch (state) {
    case breaker_state::closed:
      return "closed";
    case breaker_state::open:
      return "open";
    case breaker_state::half_open:
      return "half_open";
  }
  return "unknown";
}

const char* to_string(outcome result) {
  switch (result) {
    case outcome::success:
      return "success";
    case outcome::failure:
      return "failure";
    case outcome::neutral:
      return "neutral";
  }
  return "unknown";
}

}  // namespace okta_sidecar::resilience
