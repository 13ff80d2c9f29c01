#include "okta_sidecar/ratelimit/okta_clock.hpp"

#include <gtest/gtest.h>

#include <cmath>

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

TEST(OktaOffsetBound, EmptyUntilADateIsSeen) { EXPECT_FALSE(okta_offset_bound{}.seconds().has_value()); }

TEST(OktaOffsetBound, TakesTheLargestLowerBound) {
  okta_offset_bound b;
  b.observe(t0, wall_at(t0 + 0.9));  // answered late in the Date second: weak bound
  EXPECT_NEAR(*b.seconds(), -0.9, 1e-6);
  b.observe(t0 + 1, wall_at(t0 + 1.05));  // answered just after the second turned
  EXPECT_NEAR(*b.seconds(), -0.05, 1e-6);
  b.observe(t0 + 1, wall_at(t0 + 1.5));  // weaker again: kept
  EXPECT_NEAR(*b.seconds(), -0.05, 1e-6);
}

TEST(OktaOffsetBound, ConvergesFromBelowAndNeverPassesTheTrueOffset) {
  // Okta's clock is 7.25 s ahead; responses arrive 3 ms after Okta wrote them, at phases
  // spread over the second. The bound must stay below the truth and come within 20 ms of it.
  constexpr double truth = 7.25, latency = 0.003;
  okta_offset_bound b;
  for (int i = 0; i < 50; ++i) {
    const double okta_written = static_cast<double>(t0) + i * 0.137;
    b.observe(static_cast<std::int64_t>(std::floor(okta_written)), wall_at(okta_written + latency - truth));
    ASSERT_LE(*b.seconds(), truth);
  }
  EXPECT_GE(*b.seconds(), truth - 0.02);
}

TEST(OktaOffsetBound, OldSamplesAgeOut) {
  okta_offset_bound b;
  b.observe(t0, wall_at(t0 + 0.01));
  EXPECT_NEAR(*b.seconds(), -0.01, 1e-6);
  b.observe(t0 + 200, wall_at(t0 + 200.5));  // three minutes on: the old bound is gone
  EXPECT_NEAR(*b.seconds(), -0.5, 1e-6);
}

TEST(OktaOffsetBound, TheBoundFromThePreviousMinuteStillCounts) {
  okta_offset_bound b;
  const double minute_end = std::ceil(static_cast<double>(t0) / 60.0) * 60.0;  // a minute boundary
  const auto d = static_cast<std::int64_t>(minute_end);
  b.observe(d - 1, wall_at(minute_end - 0.99));  // bound -0.01, late in one minute
  b.observe(d, wall_at(minute_end + 0.6));       // bound -0.6, early in the next
  EXPECT_NEAR(*b.seconds(), -0.01, 1e-6);
}

TEST(OktaOffsetBound, AStepRestartsFromTheNewSample) {
  okta_offset_bound b;
  b.observe(t0, wall_at(t0 + 0.01));
  b.observe(t0 + 5, wall_at(t0 - 0.5));  // local clock stepped 5.5 s back
  EXPECT_NEAR(*b.seconds(), 5.5, 1e-6);
}

}  // namespace
}  // namespace okta_sidecar::ratelimit
