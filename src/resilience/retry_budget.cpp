#include "okta_sidecar/resilience/retry_budget.hpp"

#include <algorithm>

namespace okta_sidecar::resilience {

namespace {
std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}
}  // namespace

retry_budget::retry_budget(retry_settings settings) { update_settings(settings); }

void retry_budget::update_settings(const retry_settings& settings) {
  settings_ = settings;
  slice_length_ = std::max(duration{1}, settings_.budget_window / static_cast<int>(slice_count));
  slices_.fill(slice{});
}

std::int64_t retry_budget::slice_index(time_point now) const {
  return floor_div(now.time_since_epoch().count(), slice_length_.count());
}

retry_budget::slice& retry_budget::current(time_point now) {
  const std::int64_t index = slice_index(now);
  slice& s = slices_[static_cast<std::size_t>(
      ((index % static_cast<std::int64_t>(slice_count)) + slice_count) % slice_count)];
  if (s.index != index) s = slice{index, 0, 0};  // that slot held traffic a window ago
  return s;
}

void retry_budget::on_request(time_point now) { ++current(now).requests; }

bool retry_budget::try_spend(time_point now) {
  const double allowed = static_cast<double>(settings_.budget_min_retries) +
                         settings_.budget_fraction * static_cast<double>(requests_in_window(now));
  if (static_cast<double>(retries_in_window(now) + 1) > allowed) return false;
  ++current(now).retries;
  return true;
}

std::uint64_t retry_budget::requests_in_window(time_point now) const {
  const std::int64_t index = slice_index(now);
  std::uint64_t total = 0;
  for (const slice& s : slices_) {
    if (s.index != unused && s.index <= index && index - s.index < std::int64_t{slice_count}) {
      total += s.requests;
    }
  }
  return total;
}

std::uint64_t retry_budget::retries_in_window(time_point now) const {
  const std::int64_t index = slice_index(now);
  std::uint64_t total = 0;
  for (const slice& s : slices_) {
    if (s.index != unused && s.index <= index && index - s.index < std::int64_t{slice_count}) {
      total += s.retries;
    }
  }
  return total;
}

}  // namespace okta_sidecar::resilience
