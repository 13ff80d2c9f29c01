#include "okta_sidecar/ratelimit/shared_okta_clock.hpp"

#include <gtest/gtest.h>

#include <string>

namespace okta_sidecar::ratelimit {
namespace {

constexpr std::int64_t t0 = 1'700'000'000;

wall_time wall_at(std::int64_t epoch_seconds) { return wall_time{std::chrono::seconds(epoch_seconds)}; }

TEST(SharedOktaClock, NoBoundForAHostBeforeItsFirstDate) {
  shared_okta_clock c;
  EXPECT_FALSE(c.offset_bound("acme.okta.com").has_value());
  EXPECT_EQ(c.now_epoch(wall_at(t0)), t0);  // no Date yet: the local clock as it is
}

TEST(SharedOktaClock, BoundsArePerHostAndMatchThePureEstimator) {
  shared_okta_clock c;
  c.observe("acme.okta.com", t0 + 30, wall_at(t0));
  okta_offset_bound alone;
  alone.observe(t0 + 30, wall_at(t0));
  EXPECT_EQ(c.offset_bound("acme.okta.com"), alone.seconds());
  EXPECT_FALSE(c.offset_bound("other.okta.com").has_value());
}

TEST(SharedOktaClock, SmoothedClockFollowsEveryHost) {
  shared_okta_clock c;
  okta_clock alone;
  c.observe("a.okta.com", t0 + 30, wall_at(t0));
  alone.observe(t0 + 30, wall_at(t0));
  c.observe("b.okta.com", t0 + 31, wall_at(t0 + 1));
  alone.observe(t0 + 31, wall_at(t0 + 1));
  EXPECT_EQ(c.now_epoch(wall_at(t0 + 2)), alone.okta_now_epoch(wall_at(t0 + 2)));
}

TEST(SharedOktaClock, HostsBeyondTheCapAreNotTracked) {
  shared_okta_clock c;
  for (std::size_t i = 0; i < shared_okta_clock::max_hosts; ++i)
    c.observe("h" + std::to_string(i) + ".okta.com", t0, wall_at(t0));
  EXPECT_TRUE(c.offset_bound("h0.okta.com").has_value());
  c.observe("late.okta.com", t0, wall_at(t0));
  EXPECT_FALSE(c.offset_bound("late.okta.com").has_value());
  c.observe("h0.okta.com", t0 + 1, wall_at(t0 + 1));  // a tracked host still updates
  EXPECT_TRUE(c.offset_bound("h0.okta.com").has_value());
}

}  // namespace
}  // namespace okta_sidecar::ratelimit
