#pragma once
// Time types shared by the whole sidecar. Pure code receives `now` as an argument of these
// types and never reads a clock; only the I/O shell owns a clock (see clock_source).
#include <chrono>

namespace okta_sidecar {

using steady_clock = std::chrono::steady_clock;
using time_point = steady_clock::time_point;  // monotonic, for every deadline and wait
using duration = steady_clock::duration;
using wall_clock = std::chrono::system_clock;
using wall_time = wall_clock::time_point;  // only to relate Okta's epoch headers to `now`

using std::chrono::milliseconds;
using std::chrono::seconds;

// What the shell injects; tests use a fake.
class clock_source {
 public:
  virtual ~clock_source() = default;
  virtual time_point now() const = 0;
  virtual wall_time wall_now() const = 0;
};

class system_clock_source final : public clock_source {
 public:
  time_point now() const override { return steady_clock::now(); }
  wall_time wall_now() const override { return wall_clock::now(); }
};

}  // namespace okta_sidecar
