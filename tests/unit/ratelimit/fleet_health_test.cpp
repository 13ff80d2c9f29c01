#include "okta_sidecar/ratelimit/fleet_health.hpp"

#include <gtest/gtest.h>

#include "fake_clock.hpp"

namespace okta_sidecar::ratelimit {
namespace {

using std::chrono::milliseconds;

class FleetHealthTest : public ::testing::Test {
 protected:
  fleet_health make(std::uint32_t rejoin = 3) { return fleet_health({milliseconds(50), rejoin}); }
  void join(fleet_health& h) {
    for (int i = 0; i < 3; ++i) h.on_answer(milliseconds(1), clock.now());
  }
  testing::fake_clock clock;
};

TEST_F(FleetHealthTest, StartsLocalBecauseNothingWasHeardYet) {
  auto h = make();
  EXPECT_EQ(h.mode(), fleet_mode::local);
  EXPECT_EQ(h.last_reason(), fallback_reason::down);
  EXPECT_EQ(h.fallbacks(), 0u);
}

TEST_F(FleetHealthTest, JoinsOnlyAfterTheConfiguredRunOfHealthyAnswers) {
  auto h = make(3);
  h.on_answer(milliseconds(1), clock.now());
  h.on_answer(milliseconds(1), clock.now());
  EXPECT_EQ(h.mode(), fleet_mode::local);
  h.on_answer(milliseconds(1), clock.now());
  EXPECT_EQ(h.mode(), fleet_mode::shared);
  EXPECT_EQ(h.last_reason(), fallback_reason::none);
  EXPECT_EQ(h.rejoins(), 1u);
  EXPECT_TRUE(h.take_changed());
  EXPECT_FALSE(h.take_changed());
}

TEST_F(FleetHealthTest, RejoinAfterZeroMeansOneAnswer) {
  auto h = make(0);
  h.on_answer(milliseconds(1), clock.now());
  EXPECT_EQ(h.mode(), fleet_mode::shared);
}

TEST_F(FleetHealthTest, AnswerAtTheTimeoutIsHealthyOneMillisecondLaterIsSlow) {
  auto h = make();
  join(h);
  h.on_answer(milliseconds(50), clock.now());
  EXPECT_EQ(h.mode(), fleet_mode::shared);
  h.on_answer(milliseconds(51), clock.now());
  EXPECT_EQ(h.mode(), fleet_mode::local);
  EXPECT_EQ(h.last_reason(), fallback_reason::slow);
  EXPECT_EQ(h.fallbacks(), 1u);
  EXPECT_EQ(h.since(), clock.now());
}

TEST_F(FleetHealthTest, SlowAnswerBreaksTheStreakSoRejoinStartsOver) {
  auto h = make(3);
  h.on_answer(milliseconds(1), clock.now());
  h.on_answer(milliseconds(1), clock.now());
  h.on_answer(milliseconds(80), clock.now());
  h.on_answer(milliseconds(1), clock.now());
  h.on_answer(milliseconds(1), clock.now());
  EXPECT_EQ(h.mode(), fleet_mode::local);
  EXPECT_EQ(h.healthy_streak(), 2u);
  h.on_answer(milliseconds(1), clock.now());
  EXPECT_EQ(h.mode(), fleet_mode::shared);
}

TEST_F(FleetHealthTest, FailureFallsBackWithItsReasonAndCountsOnce) {
  auto h = make();
  join(h);
  h.on_failure(fallback_reason::down, clock.now());
  h.on_failure(fallback_reason::error, clock.now());
  EXPECT_EQ(h.mode(), fleet_mode::local);
  EXPECT_EQ(h.last_reason(), fallback_reason::error);
  EXPECT_EQ(h.fallbacks(), 1u);
}

TEST_F(FleetHealthTest, OutstandingRequestFallsBackOnlyPastTheTimeout) {
  auto h = make();
  join(h);
  const auto sent = clock.now();
  clock.advance(milliseconds(50));
  h.check_outstanding(sent, clock.now());
  EXPECT_EQ(h.mode(), fleet_mode::shared);
  clock.advance(milliseconds(1));
  h.check_outstanding(sent, clock.now());
  EXPECT_EQ(h.mode(), fleet_mode::local);
  EXPECT_EQ(h.last_reason(), fallback_reason::slow);
}

TEST_F(FleetHealthTest, FlappingCountsEveryFallbackAndRejoin) {
  auto h = make(1);
  for (int i = 0; i < 4; ++i) {
    h.on_answer(milliseconds(1), clock.now());
    h.on_failure(fallback_reason::down, clock.now());
  }
  EXPECT_EQ(h.fallbacks(), 4u);
  EXPECT_EQ(h.rejoins(), 4u);
}

}  // namespace
}  // namespace okta_sidecar::ratelimit
