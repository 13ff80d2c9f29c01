#include "okta_sidecar/ratelimit/okta_clock.hpp"

#include <algorithm>
#include <cmath>

namespace okta_sidecar::ratelimit {
namespace {

// Date is truncated to the second (RFC 9110 §5.6.7), so Okta's clock at the moment the header
// was written lies in [date, date + 1): take the middle.
constexpr double date_resolution_midpoint = 0.5;
// Later samples refine the estimate slowly, which averages out the truncation and latency noise.
constexpr double smoothing = 0.2;
// A sample this far from the estimate means one of the clocks was stepped (NTP, VM resume):
// start again from it instead of drifting there over many responses.
constexpr double step_threshold_seconds = 2.0;

double to_seconds(wall_time t) { return std::chrono::duration<double>(t.time_since_epoch()).count(); }

}  // namespace

void okta_clock::observe(std::int64_t server_date_epoch, wall_time received_at) {
  const double sample =
      static_cast<double>(server_date_epoch) + date_resolution_midpoint - to_seconds(received_at);
  if (!offset_ || std::fabs(sample - *offset_) > step_threshold_seconds) {
    offset_ = sample;
    samples_ = 1;
    return;
  }
  ++samples_;
  // Plain mean for the first few samples, then an exponential average.
  const double weight = std::max(smoothing, 1.0 / static_cast<double>(samples_));
  *offset_ += weight * (sample - *offset_);
}

std::optional<double> okta_clock::offset_seconds() const { return offset_; }

std::int64_t okta_clock::okta_now_epoch(wall_time wall_now) const {
  return static_cast<std::int64_t>(std::floor(to_seconds(wall_now) + offset_.value_or(0.0)));
}

void okta_offset_bound::observe(std::int64_t server_date_epoch, wall_time received_at) {
  const double received = to_seconds(received_at);
  const double sample = static_cast<double>(server_date_epoch) - received;
  const auto minute = static_cast<std::int64_t>(std::floor(received / 60.0));
  if (const auto b = seconds(); b && std::fabs(sample - *b) > step_seconds) {
    current_ = previous_ = slot{};  // a clock was stepped: the old samples say nothing now
  }
  if (!current_.set || minute != current_.minute) {
    previous_ = current_.set && minute == current_.minute + 1 ? current_ : slot{};
    current_ = slot{minute, sample, true};
    return;
  }
  current_.bound = std::max(current_.bound, sample);
}

std::optional<double> okta_offset_bound::seconds() const {
  if (!current_.set) return std::nullopt;
  return previous_.set ? std::max(current_.bound, previous_.bound) : current_.bound;
}

}  // namespace okta_sidecar::ratelimit
