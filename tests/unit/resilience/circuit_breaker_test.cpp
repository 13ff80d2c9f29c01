#include "okta_sidecar/resilience/circuit_breaker.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace okta_sidecar::resilience {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const time_point t0 = time_point{} + std::chrono::hours(1);

breaker_settings small_settings() {
  breaker_settings s;
  s.failure_threshold = 3;
  s.open_time = seconds(10);
  s.max_open_time = seconds(35);
  s.half_open_probes = 1;
  return s;
}

void fail_n(circuit_breaker& b, int n, time_point now) {
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(b.try_acquire(now).allowed);
    b.record(outcome::failure, false, now);
  }
}

// Drives a breaker to open at `now` from closed.
void open_it(circuit_breaker& b, time_point now) { fail_n(b, 3, now); }

TEST(ClassifyStatus, Table) {
  struct row {
    int status;
    outcome expected;
  };
  const std::vector<row> rows = {
      {99, outcome::failure},  {100, outcome::success}, {200, outcome::success}, {204, outcome::success},
      {304, outcome::success}, {399, outcome::success}, {400, outcome::neutral}, {401, outcome::neutral},
      {403, outcome::neutral}, {404, outcome::neutral}, {429, outcome::neutral}, {499, outcome::neutral},
      {500, outcome::failure}, {501, outcome::neutral}, {502, outcome::failure}, {503, outcome::failure},
      {504, outcome::failure}, {599, outcome::failure}, {600, outcome::failure}, {0, outcome::failure},
      {-1, outcome::failure},
  };
  for (const auto& r : rows) EXPECT_EQ(classify_status(r.status), r.expected) << r.status;
}

TEST(CircuitBreaker, StartsClosedAndAllows) {
  circuit_breaker b(small_settings());
  EXPECT_EQ(b.state(t0), breaker_state::closed);
  const permit p = b.try_acquire(t0);
  EXPECT_TRUE(p.allowed);
  EXPECT_FALSE(p.probe);
  EXPECT_EQ(b.opened_count(), 0u);
  EXPECT_EQ(b.closed_count(), 0u);
}

TEST(CircuitBreaker, ThresholdMinusOneStaysClosed) {
  circuit_breaker b(small_settings());
  fail_n(b, 2, t0);
  EXPECT_EQ(b.state(t0), breaker_state::closed);
  EXPECT_TRUE(b.try_acquire(t0).allowed);
  EXPECT_EQ(b.opened_count(), 0u);
}

TEST(CircuitBreaker, ThresholdOpensAndAnswersWithRetryAfter) {
  circuit_breaker b(small_settings());
  fail_n(b, 3, t0);
  EXPECT_EQ(b.state(t0), breaker_state::open);
  EXPECT_EQ(b.opened_count(), 1u);
  const permit p = b.try_acquire(t0 + seconds(4));
  EXPECT_FALSE(p.allowed);
  EXPECT_FALSE(p.probe);
  EXPECT_EQ(p.retry_after, seconds(6));
  EXPECT_EQ(b.open_until(), t0 + seconds(10));
}

TEST(CircuitBreaker, SuccessResetsConsecutiveCount) {
  circuit_breaker b(small_settings());
  fail_n(b, 2, t0);
  b.record(outcome::success, false, t0);
  fail_n(b, 2, t0);
  EXPECT_EQ(b.state(t0), breaker_state::closed);
  fail_n(b, 1, t0);
  EXPECT_EQ(b.state(t0), breaker_state::open);
}

TEST(CircuitBreaker, NeutralOutcomesNeverCountNorReset) {
  circuit_breaker b(small_settings());
  for (int i = 0; i < 100; ++i) b.record(outcome::neutral, false, t0);
  EXPECT_EQ(b.state(t0), breaker_state::closed);
  fail_n(b, 2, t0);
  b.record(outcome::neutral, false, t0);  // a 429 between failures does not reset the run
  EXPECT_EQ(b.state(t0), breaker_state::closed);
  fail_n(b, 1, t0);
  EXPECT_EQ(b.state(t0), breaker_state::open);
}

TEST(CircuitBreaker, OpenUntilJustBeforeOpenTimeThenHalfOpen) {
  circuit_breaker b(small_settings());
  open_it(b, t0);
  const time_point almost = t0 + seconds(10) - std::chrono::nanoseconds(1);
  EXPECT_EQ(b.state(almost), breaker_state::open);
  const permit denied = b.try_acquire(almost);
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.retry_after, std::chrono::nanoseconds(1));
  EXPECT_EQ(b.state(t0 + seconds(10)), breaker_state::half_open);  // reported before any acquire
  const permit probe = b.try_acquire(t0 + seconds(10));
  EXPECT_TRUE(probe.allowed);
  EXPECT_TRUE(probe.probe);
  EXPECT_EQ(b.state(t0 + seconds(10)), breaker_state::half_open);
}

TEST(CircuitBreaker, ProbeSlotsAreLimited) {
  auto s = small_settings();
  s.half_open_probes = 2;
  circuit_breaker b(s);
  open_it(b, t0);
  const time_point t = t0 + seconds(10);
  EXPECT_TRUE(b.try_acquire(t).probe);
  EXPECT_TRUE(b.try_acquire(t).probe);
  const permit third = b.try_acquire(t);
  EXPECT_FALSE(third.allowed);
  EXPECT_TRUE(third.hold);  // waits for the probes' outcome instead of failing
  EXPECT_EQ(third.retry_after, seconds(1));
}

TEST(CircuitBreaker, HoldOnlyWhileProbesAreInFlight) {
  circuit_breaker b(small_settings());
  open_it(b, t0);
  EXPECT_FALSE(b.try_acquire(t0 + seconds(1)).hold);  // open: answer at once, no hold
  const time_point t = t0 + seconds(10);
  ASSERT_TRUE(b.try_acquire(t).probe);
  EXPECT_TRUE(b.try_acquire(t).hold);
  b.record(outcome::success, true, t);
  const permit after = b.try_acquire(t);
  EXPECT_TRUE(after.allowed);  // the held request goes through once the probe succeeded
  EXPECT_FALSE(after.hold);
}

TEST(CircuitBreaker, HeldRequestIsRefusedWhenTheProbeFails) {
  circuit_breaker b(small_settings());
  open_it(b, t0);
  const time_point t = t0 + seconds(10);
  ASSERT_TRUE(b.try_acquire(t).probe);
  ASSERT_TRUE(b.try_acquire(t).hold);
  b.record(outcome::failure, true, t);
  const permit after = b.try_acquire(t);
  EXPECT_FALSE(after.allowed);
  EXPECT_FALSE(after.hold);
  EXPECT_GT(after.retry_after, seconds(0));
}

TEST(CircuitBreaker, ReleaseProbeFreesTheSlot) {
  circuit_breaker b(small_settings());
  open_it(b, t0);
  const time_point t = t0 + seconds(10);
  ASSERT_TRUE(b.try_acquire(t).probe);
  EXPECT_FALSE(b.try_acquire(t).allowed);
  b.release_probe(t);
  EXPECT_EQ(b.state(t), breaker_state::half_open);
  EXPECT_TRUE(b.try_acquire(t).probe);
}

TEST(CircuitBreaker, ReleaseProbeOutsideHalfOpenIsHarmless) {
  circuit_breaker b(small_settings());
  b.release_probe(t0);
  EXPECT_EQ(b.state(t0), breaker_state::closed);
  open_it(b, t0);
  b.release_probe(t0);
  EXPECT_EQ(b.state(t0), breaker_state::open);
}

TEST(CircuitBreaker, ProbeSuccessCloses) {
  circuit_breaker b(small_settings());
  open_it(b, t0);
  const time_point t = t0 + seconds(10);
  ASSERT_TRUE(b.try_acquire(t).probe);
  b.record(outcome::success, true, t);
  EXPECT_EQ(b.state(t), breaker_state::closed);
  EXPECT_EQ(b.closed_count(), 1u);
  const permit p = b.try_acquire(t);
  EXPECT_TRUE(p.allowed);
  EXPECT_FALSE(p.probe);
}

TEST(CircuitBreaker, NeutralProbeClosesBecauseOktaAnswered) {
  circuit_breaker b(small_settings());
  open_it(b, t0);
  const time_point t = t0 + seconds(10);
  ASSERT_TRUE(b.try_acquire(t).probe);
  b.record(outcome::neutral, true, t);
  EXPECT_EQ(b.state(t), breaker_state::closed);
}

TEST(CircuitBreaker, ProbeFailureReopensWithDoubledTimeUpToCap) {
  circuit_breaker b(small_settings());  // open 10 s, cap 35 s
  open_it(b, t0);
  EXPECT_EQ(b.current_open_time(), seconds(10));
  time_point t = t0 + seconds(10);
  const std::vector<duration> expected = {seconds(20), seconds(35), seconds(35)};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    ASSERT_TRUE(b.try_acquire(t).probe) << i;
    b.record(outcome::failure, true, t);
    EXPECT_EQ(b.state(t), breaker_state::open) << i;
    EXPECT_EQ(b.current_open_time(), expected[i]) << i;
    EXPECT_EQ(b.try_acquire(t + expected[i] - milliseconds(1)).allowed, false) << i;
    t += expected[i];
  }
  EXPECT_EQ(b.opened_count(), 4u);
  EXPECT_EQ(b.closed_count(), 0u);
}

TEST(CircuitBreaker, GrowthResetsAfterClose) {
  circuit_breaker b(small_settings());
  open_it(b, t0);
  time_point t = t0 + seconds(10);
  ASSERT_TRUE(b.try_acquire(t).probe);
  b.record(outcome::failure, true, t);  // 20 s now
  t += seconds(20);
  ASSERT_TRUE(b.try_acquire(t).probe);
  b.record(outcome::success, true, t);
  ASSERT_EQ(b.state(t), breaker_state::closed);
  open_it(b, t);
  EXPECT_EQ(b.current_open_time(), seconds(10));
  EXPECT_EQ(b.try_acquire(t).retry_after, seconds(10));
}

TEST(CircuitBreaker, ThresholdCountRestartsAfterClose) {
  circuit_breaker b(small_settings());
  fail_n(b, 2, t0);
  fail_n(b, 1, t0);  // opens
  const time_point t = t0 + seconds(10);
  ASSERT_TRUE(b.try_acquire(t).probe);
  b.record(outcome::success, true, t);
  fail_n(b, 2, t);
  EXPECT_EQ(b.state(t), breaker_state::closed);
}

TEST(CircuitBreaker, LateOutcomesWhileOpenAreIgnored) {
  circuit_breaker b(small_settings());
  open_it(b, t0);
  b.record(outcome::success, false, t0 + seconds(1));
  b.record(outcome::failure, false, t0 + seconds(1));
  EXPECT_EQ(b.state(t0 + seconds(1)), breaker_state::open);
  EXPECT_EQ(b.open_until(), t0 + seconds(10));
  EXPECT_EQ(b.opened_count(), 1u);
}

TEST(CircuitBreaker, NonProbeOutcomesWhileHalfOpenDoNotDecide) {
  circuit_breaker b(small_settings());
  open_it(b, t0);
  const time_point t = t0 + seconds(10);
  ASSERT_TRUE(b.try_acquire(t).probe);
  b.record(outcome::success, false, t);
  EXPECT_EQ(b.state(t), breaker_state::half_open);
  b.record(outcome::failure, false, t);
  EXPECT_EQ(b.state(t), breaker_state::half_open);
  EXPECT_FALSE(b.try_acquire(t).allowed);  // the probe's slot is still taken
}

TEST(CircuitBreaker, SecondProbeFinishingAfterCloseCountsAsNormalOutcome) {
  auto s = small_settings();
  s.half_open_probes = 2;
  circuit_breaker b(s);
  open_it(b, t0);
  const time_point t = t0 + seconds(10);
  ASSERT_TRUE(b.try_acquire(t).probe);
  ASSERT_TRUE(b.try_acquire(t).probe);
  b.record(outcome::success, true, t);
  ASSERT_EQ(b.state(t), breaker_state::closed);
  b.record(outcome::failure, true, t);  // one failure in closed: below the threshold
  EXPECT_EQ(b.state(t), breaker_state::closed);
  fail_n(b, 2, t);
  EXPECT_EQ(b.state(t), breaker_state::open);
}

TEST(CircuitBreaker, OpenTimeOfZeroGoesStraightToHalfOpen) {
  auto s = small_settings();
  s.open_time = duration::zero();
  circuit_breaker b(s);
  open_it(b, t0);
  EXPECT_EQ(b.state(t0), breaker_state::half_open);
  EXPECT_TRUE(b.try_acquire(t0).probe);
}

TEST(CircuitBreaker, ZeroThresholdAndZeroProbesAreClampedToOne) {
  auto s = small_settings();
  s.failure_threshold = 0;
  s.half_open_probes = 0;
  circuit_breaker b(s);
  EXPECT_TRUE(b.try_acquire(t0).allowed);
  b.record(outcome::success, false, t0);
  EXPECT_EQ(b.state(t0), breaker_state::closed);
  b.record(outcome::failure, false, t0);
  EXPECT_EQ(b.state(t0), breaker_state::open);
  const time_point t = t0 + seconds(10);
  EXPECT_TRUE(b.try_acquire(t).probe);
  EXPECT_FALSE(b.try_acquire(t).allowed);
}

TEST(CircuitBreaker, CapBelowOpenTimeKeepsOpenTime) {
  auto s = small_settings();
  s.max_open_time = seconds(5);
  circuit_breaker b(s);
  open_it(b, t0);
  EXPECT_EQ(b.current_open_time(), seconds(10));
  ASSERT_TRUE(b.try_acquire(t0 + seconds(10)).probe);
  b.record(outcome::failure, true, t0 + seconds(10));
  EXPECT_EQ(b.current_open_time(), seconds(10));
}

breaker_settings window_settings() {
  breaker_settings s;
  s.failure_threshold = 1000;  // keep the consecutive rule out of the way
  s.open_time = seconds(10);
  s.window_size = 10;
  s.failure_rate = 0.5;
  s.min_calls = 6;
  return s;
}

TEST(CircuitBreakerWindow, BelowMinCallsNeverTrips) {
  circuit_breaker b(window_settings());
  for (int i = 0; i < 5; ++i) b.record(outcome::failure, false, t0);  // 5/5 but < 6 calls
  EXPECT_EQ(b.state(t0), breaker_state::closed);
}

TEST(CircuitBreakerWindow, TripsExactlyAtRate) {
  circuit_breaker b(window_settings());
  // s f s f s: 2/5, then f: 3/6 = 0.5 -> open
  b.record(outcome::success, false, t0);
  b.record(outcome::failure, false, t0);
  b.record(outcome::success, false, t0);
  b.record(outcome::failure, false, t0);
  b.record(outcome::success, false, t0);
  EXPECT_EQ(b.state(t0), breaker_state::closed);
  b.record(outcome::failure, false, t0);
  EXPECT_EQ(b.state(t0), breaker_state::open);
  EXPECT_EQ(b.opened_count(), 1u);
}

TEST(CircuitBreakerWindow, JustBelowRateStaysClosed) {
  circuit_breaker b(window_settings());
  // 4 successes then 3 failures interleaved: 3/7 < 0.5
  for (int i = 0; i < 4; ++i) b.record(outcome::success, false, t0);
  for (int i = 0; i < 3; ++i) b.record(outcome::failure, false, t0);
  EXPECT_EQ(b.state(t0), breaker_state::closed);
  b.record(outcome::failure, false, t0);  // 4/8 -> open
  EXPECT_EQ(b.state(t0), breaker_state::open);
}

TEST(CircuitBreakerWindow, OldOutcomesSlideOut) {
  circuit_breaker b(window_settings());
  for (int i = 0; i < 4; ++i) b.record(outcome::failure, false, t0);
  for (int i = 0; i < 4; ++i) b.record(outcome::success, false, t0);
  for (int i = 0; i < 6; ++i) b.record(outcome::success, false, t0);
  // The last 10 calls are all successes: the 4 early failures slid out.
  b.record(outcome::failure, false, t0);  // 1/10
  EXPECT_EQ(b.state(t0), breaker_state::closed);
}

TEST(CircuitBreakerWindow, NeutralNotCountedAsCall) {
  circuit_breaker b(window_settings());
  for (int i = 0; i < 3; ++i) b.record(outcome::failure, false, t0);
  for (int i = 0; i < 20; ++i) b.record(outcome::neutral, false, t0);
  for (int i = 0; i < 2; ++i) b.record(outcome::success, false, t0);
  b.record(outcome::failure, false, t0);  // 4/6 -> open (neutrals did not dilute it)
  EXPECT_EQ(b.state(t0), breaker_state::open);
}

TEST(CircuitBreakerWindow, MinCallsAboveWindowSizeIsClamped) {
  auto s = window_settings();
  s.window_size = 4;
  s.min_calls = 20;
  circuit_breaker b(s);
  b.record(outcome::success, false, t0);
  b.record(outcome::success, false, t0);
  b.record(outcome::failure, false, t0);
  EXPECT_EQ(b.state(t0), breaker_state::closed);  // 3 calls < 4
  b.record(outcome::failure, false, t0);          // 2/4
  EXPECT_EQ(b.state(t0), breaker_state::open);
}

TEST(CircuitBreakerWindow, WindowRestartsAfterClose) {
  circuit_breaker b(window_settings());
  for (int i = 0; i < 6; ++i) b.record(outcome::failure, false, t0);
  ASSERT_EQ(b.state(t0), breaker_state::open);
  const time_point t = t0 + seconds(10);
  ASSERT_TRUE(b.try_acquire(t).probe);
  b.record(outcome::success, true, t);
  for (int i = 0; i < 5; ++i) b.record(outcome::failure, false, t);  // < min_calls again
  EXPECT_EQ(b.state(t), breaker_state::closed);
}

TEST(CircuitBreaker, UpdateSettingsKeepsStateAndAppliesNewThreshold) {
  circuit_breaker b(small_settings());
  fail_n(b, 2, t0);
  auto s = small_settings();
  s.failure_threshold = 2;
  b.update_settings(s);
  EXPECT_EQ(b.state(t0), breaker_state::closed);
  fail_n(b, 1, t0);  // 3 >= 2
  EXPECT_EQ(b.state(t0), breaker_state::open);
}

TEST(CircuitBreaker, UpdateSettingsClampsGrowthToNewCap) {
  circuit_breaker b(small_settings());
  open_it(b, t0);
  ASSERT_TRUE(b.try_acquire(t0 + seconds(10)).probe);
  b.record(outcome::failure, true, t0 + seconds(10));  // 20 s
  auto s = small_settings();
  s.max_open_time = seconds(15);
  b.update_settings(s);
  EXPECT_EQ(b.current_open_time(), seconds(15));
  EXPECT_EQ(b.open_until(), t0 + seconds(30));  // the running period keeps its end
}

TEST(CircuitBreaker, ToStringNames) {
  EXPECT_STREQ(to_string(breaker_state::closed), "closed");
  EXPECT_STREQ(to_string(breaker_state::open), "open");
  EXPECT_STREQ(to_string(breaker_state::half_open), "half_open");
  EXPECT_STREQ(to_string(outcome::success), "success");
  EXPECT_STREQ(to_string(outcome::failure), "failure");
  EXPECT_STREQ(to_string(outcome::neutral), "neutral");
}

}  // namespace
}  // namespace okta_sidecar::resilience
