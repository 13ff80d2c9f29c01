#pragma once
// Caps retries to a fraction of recent traffic so that retries can never multiply an outage
// (the shape of Finagle's and Envoy's retry budgets). Counts live in a ring of time slices,
// so memory is fixed and old traffic ages out without a timer. Not thread-safe: the shell
// serialises calls.
#include <array>
#include <cstdint>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/resilience/retry_policy.hpp"

namespace okta_sidecar::resilience {

// Over the last budget_window (measured in tenths of it),
// retries <= budget_min_retries + budget_fraction * requests.
class retry_budget {
 public:
  explicit retry_budget(retry_settings settings);

  void on_request(time_point now);  // once per downstream request (not per attempt)
  bool try_spend(time_point now);   // true: a retry may go now, and it is counted

  void update_settings(const retry_settings& settings);  // restarts the window

  // Over the window ending at `now`: for /status and tests.
  std::uint64_t requests_in_window(time_point now) const;
  std::uint64_t retries_in_window(time_point now) const;

 private:
  static constexpr std::size_t slice_count = 10;
  static constexpr std::int64_t unused = INT64_MIN;
  struct slice {
    std::int64_t index = unused;  // which slice of time (now / slice_length) this holds
    std::uint64_t requests = 0;
    std::uint64_t retries = 0;
  };
  std::int64_t slice_index(time_point now) const;
  slice& current(time_point now);

  retry_settings settings_;
  duration slice_length_{};
  std::array<slice, slice_count> slices_{};
};

}  // namespace okta_sidecar::resilience
