#include "okta_sidecar/ratelimit/okta_clock.hpp"

#include <gtest/gtest.h>

namespace okta_sidecar::ratelimit {
namespace {

constexpr std::int64_t t0 = 1'700'000'000;

wall_time wall_at(double epoch_seconds) {
  return wall_time{
      std::chrono::duration_cast<wall_clock::duration>(std::chrono::duration<double>(epoch_seconds))};
}

TEST(OktaClock, WithoutSamplesUsesLocalClock) {
  okta_clock c;
  EXPECT_FALSE(c.offset_seconds().has_value());
  EXPECT_EQ(c.okta_now_epoch(wall_at(t0 + 0.999)), t0);
  EXPECT_EQ(c.okta_now_epoch(wall_at(t0 - 0.5)), t0 - 1);  // floor, not truncation
}

TEST(OktaClock, OneSampleTakesMiddleOfDateSecond) {
  okta_clock c;
  c.observe(t0, wall_at(t0 + 10.25));  // local clock 10 s ahead of Okta
  ASSERT_TRUE(c.offset_seconds().has_value());
  EXPECT_NEAR(*c.offset_seconds(), -9.75, 1e-6);
  EXPECT_EQ(c.okta_now_epoch(wall_at(t0 + 100.5)), t0 + 90);
}

TEST(OktaClock, LocalClockBehindByAnHour) {
  okta_clock c;
  c.observe(t0, wall_at(t0 - 3600.5));
  EXPECT_NEAR(*c.offset_seconds(), 3601.0, 1e-6);
  EXPECT_EQ(c.okta_now_epoch(wall_at(t0 - 3600.0)), t0 + 1);
}

TEST(OktaClock, AveragesTruncationNoise) {
  okta_clock c;
  // The same Date second seen at five instants spread over that second: the mean of the
  // midpoint estimates is the true offset's best guess.
  for (double frac : {0.0, 0.2, 0.4, 0.6, 0.8}) c.observe(t0, wall_at(t0 + frac));
  EXPECT_NEAR(*c.offset_seconds(), 0.1, 1e-6);
}

TEST(OktaClock, SmallJitterMovesEstimateGradually) {
  okta_clock c;
  for (int i = 0; i < 10; ++i) c.observe(t0 + i, wall_at(t0 + i));  // offset 0.5
  EXPECT_NEAR(*c.offset_seconds(), 0.5, 1e-6);
  c.observe(t0 + 20, wall_at(t0 + 19.0));  // sample 1.5: within 2 s, smoothed
  EXPECT_NEAR(*c.offset_seconds(), 0.5 + 0.2 * 1.0, 1e-6);
}

TEST(OktaClock, ClockStepRestartsEstimate) {
  okta_clock c;
  for (int i = 0; i < 10; ++i) c.observe(t0 + i, wall_at(t0 + i));
  c.observe(t0 + 20, wall_at(t0 + 20 - 3600));  // local clock stepped back an hour
  EXPECT_NEAR(*c.offset_seconds(), 3600.5, 1e-6);
  c.observe(t0 + 21, wall_at(t0 + 21 - 3600 + 2.6));  // 2.6 s away: another step
  EXPECT_NEAR(*c.offset_seconds(), 3600.5 - 2.6, 1e-6);
}

}  // namespace
}  // namespace okta_sidecar::ratelimit
