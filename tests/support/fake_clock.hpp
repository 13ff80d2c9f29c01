#pragma once
// A hand-driven clock for unit tests of pure code: time moves only when the test says so.
#include <chrono>

#include "okta_sidecar/clock.hpp"

namespace okta_sidecar::testing {

// Starts at an arbitrary non-zero instant; wall time keeps a fixed offset from steady time.
class fake_clock final : public clock_source {
 public:
  time_point now() const override { return now_; }
  wall_time wall_now() const override {
    return wall_time{} + wall_offset_ +
           std::chrono::duration_cast<wall_clock::duration>(now_.time_since_epoch());
  }
  void advance(duration d) { now_ += d; }
  void set_wall_offset(wall_clock::duration d) { wall_offset_ = d; }

 private:
  time_point now_ = time_point{} + std::chrono::hours(1000);
  wall_clock::duration wall_offset_ = std::chrono::seconds(1'700'000'000);
};

}  // namespace okta_sidecar::testing
