#include "okta_sidecar/ratelimit/bucket.hpp"

#include <gtest/gtest.h>

#include "fake_clock.hpp"

namespace okta_sidecar::ratelimit {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::int64_t epoch0 = 1'700'000'000;

class BucketTest : public ::testing::Test {
 protected:
  // Okta headers for a window ending `in` from now (reset epoch counted from epoch0).
  observation window(std::int64_t limit, std::int64_t remaining, std::int64_t reset_s) {
    observation o;
    o.kind = limit_kind::window;
    o.limit = limit;
    o.remaining = remaining;
    o.reset_epoch = epoch0 + reset_s;
    o.reset_at = start_ + seconds(reset_s);
    return o;
  }
  // Takes a probe and answers it with `o`.
  void learn(const observation& o) {
    const grant g = b_.take(0.0, clock_.now());
    ASSERT_TRUE(g.granted);
    b_.settle(g, settle_kind::answered, &o, clock_.now());
  }
  time_point now() const { return clock_.now(); }

  testing::fake_clock clock_;
  time_point start_ = clock_.now();
  bucket b_;
};

TEST_F(BucketTest, UnknownBucketAdmitsOneProbeAndHoldsTheRest) {
  const grant probe = b_.take(0.0, now());
  EXPECT_TRUE(probe.granted);
  EXPECT_TRUE(probe.probe);
  const grant second = b_.take(0.0, now());
  EXPECT_FALSE(second.granted);
  EXPECT_FALSE(second.retry_at.has_value());  // woken by the probe's answer, not by time
  EXPECT_EQ(b_.view(now()).phase, bucket_phase::unknown);

  const auto o = window(600, 599, 60);
  b_.settle(probe, settle_kind::answered, &o, now());
  const auto v = b_.view(now());
  EXPECT_EQ(v.phase, bucket_phase::confirmed);
  EXPECT_EQ(v.limit, 600);
  EXPECT_EQ(v.remaining, 599);
  EXPECT_EQ(v.available, 599);
  EXPECT_TRUE(b_.take(0.0, now()).granted);
}

TEST_F(BucketTest, LostProbeReleasesTheProbeSlot) {
  const grant probe = b_.take(0.0, now());
  b_.settle(probe, settle_kind::lost, nullptr, now());
  const grant again = b_.take(0.0, now());
  EXPECT_TRUE(again.granted);
  EXPECT_TRUE(again.probe);
}

TEST_F(BucketTest, ProbeAnsweredWithoutHeadersMakesTheBucketUnmetered) {
  const grant probe = b_.take(0.0, now());
  const observation none;
  b_.settle(probe, settle_kind::answered, &none, now());
  EXPECT_EQ(b_.view(now()).phase, bucket_phase::unmetered);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(b_.take(0.0, now()).granted);
  // The first headers that do come back meter it again.
  const auto o = window(10, 0, 30);
  b_.settle(grant{true, false, 0, std::nullopt}, settle_kind::answered, &o, now());
  EXPECT_EQ(b_.view(now()).phase, bucket_phase::confirmed);
  EXPECT_FALSE(b_.take(0.0, now()).granted);
}

TEST_F(BucketTest, InflightRequestsCountUntilTheirAnswerArrives) {
  learn(window(10, 3, 60));
  const grant a = b_.take(0.0, now());
  const grant b = b_.take(0.0, now());
  const grant c = b_.take(0.0, now());
  ASSERT_TRUE(a.granted && b.granted && c.granted);
  EXPECT_EQ(b_.view(now()).inflight, 3);
  const grant d = b_.take(0.0, now());
  EXPECT_FALSE(d.granted);
  ASSERT_TRUE(d.retry_at.has_value());
  EXPECT_EQ(*d.retry_at, start_ + seconds(60));

  // The answer of `a` reflects `a` only: still nothing left for a fourth.
  auto o = window(10, 2, 60);
  b_.settle(a, settle_kind::answered, &o, now());
  EXPECT_EQ(b_.view(now()).available, 0);
  // A 429 for `b` (here without headers) means Okta did not count it: its budget comes back.
  b_.settle(b, settle_kind::not_processed, nullptr, now());
  EXPECT_EQ(b_.view(now()).available, 1);
}

TEST_F(BucketTest, OutOfOrderAnswersKeepTheMinimumRemaining) {
  learn(window(10, 9, 60));
  auto o = window(10, 5, 60);
  b_.settle(b_.take(0.0, now()), settle_kind::answered, &o, now());
  o = window(10, 7, 60);  // processed earlier, arrived later
  b_.settle(b_.take(0.0, now()), settle_kind::answered, &o, now());
  EXPECT_EQ(b_.view(now()).remaining, 5);
}

struct merge_case {
  const char* name;
  std::int64_t reset_s;  // relative to the stored window's reset (60)
  std::int64_t remaining;
  std::int64_t want_remaining;
  std::int64_t want_reset_s;
};

class BucketMergeTest : public BucketTest, public ::testing::WithParamInterface<merge_case> {};

TEST_P(BucketMergeTest, FollowsTheApimutexRules) {
  const auto& c = GetParam();
  learn(window(100, 50, 60));
  const auto o = window(100, c.remaining, 60 + c.reset_s);
  b_.settle(b_.take(0.0, now()), settle_kind::answered, &o, now());
  const auto v = b_.view(now());
  EXPECT_EQ(v.remaining, c.want_remaining);
  EXPECT_EQ(v.reset_epoch, epoch0 + c.want_reset_s);
}

INSTANTIATE_TEST_SUITE_P(Cases, BucketMergeTest,
                         ::testing::Values(
                             // A larger reset is a new window: its Remaining replaces ours even when higher.
                             merge_case{"LargerResetStartsNewWindow", 61, 90, 90, 121},
                             merge_case{"OneSecondLaterIsStillANewWindow", 1, 99, 99, 61},
                             // Same window: minimum wins.
                             merge_case{"SameWindowLower", 0, 40, 40, 60},
                             merge_case{"SameWindowHigher", 0, 70, 50, 60},
                             // Older by less than half the learned (60 s) window: still this
                             // window; minimum is the safe side of a doubt.
                             merge_case{"SlightlyOlderTreatedAsSameWindow", -1, 45, 45, 60},
                             merge_case{"JustUnderHalfAWindowOlderIsSameWindow", -29, 45, 45, 60},
                             // Two windows' resets are a whole window apart: from half on, stale.
                             merge_case{"HalfAWindowOlderIsStale", -30, 3, 50, 60},
                             merge_case{"WholeWindowOlderIsStale", -60, 3, 50, 60},
                             merge_case{"MuchOlderIsStale", -600, 0, 50, 60}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(BucketTest, NeighbourConsumptionSeenInHeadersBeatsOurOwnCount) {
  learn(window(100, 99, 60));
  const grant a = b_.take(0.0, now());
  // Another pod used 50 meanwhile: the answer to our one request shows 48, not 98.
  const auto o = window(100, 48, 60);
  b_.settle(a, settle_kind::answered, &o, now());
  EXPECT_EQ(b_.view(now()).available, 48);
  for (int i = 0; i < 48; ++i) ASSERT_TRUE(b_.take(0.0, now()).granted);
  EXPECT_FALSE(b_.take(0.0, now()).granted);
}

TEST_F(BucketTest, WindowRollOverOpensWithOneProbeThenTrustsItsAnswer) {
  learn(window(100, 0, 60));
  EXPECT_FALSE(b_.take(0.0, now()).granted);
  clock_.advance(seconds(60) - milliseconds(1));
  EXPECT_FALSE(b_.take(0.0, now()).granted);
  clock_.advance(milliseconds(1));
  auto v = b_.view(now());
  EXPECT_EQ(v.phase, bucket_phase::opening);
  EXPECT_EQ(v.available, 100);  // restored to the learned limit
  const grant probe = b_.take(0.0, now());
  EXPECT_TRUE(probe.probe);
  EXPECT_FALSE(b_.take(0.0, now()).granted);  // no thundering herd into an unknown window

  // The new window's first answer: a neighbour already used 30 of it.
  observation o = window(100, 69, 120);
  o.reset_at = now() + seconds(60);
  b_.settle(probe, settle_kind::answered, &o, now());
  v = b_.view(now());
  EXPECT_EQ(v.phase, bucket_phase::confirmed);
  EXPECT_EQ(v.available, 69);
}

TEST_F(BucketTest, InflightFromTheOldWindowStillCountsAfterRollOver) {
  learn(window(100, 10, 60));
  const grant old = b_.take(0.0, now());
  clock_.advance(seconds(60));
  EXPECT_EQ(b_.view(now()).available, 99);
  // Its answer carries the old reset: it cost the old window, and it no longer counts.
  const auto o = window(100, 9, 60);
  b_.settle(old, settle_kind::answered, &o, now());
  const auto v = b_.view(now());
  EXPECT_EQ(v.phase, bucket_phase::opening);
  EXPECT_EQ(v.available, 100);
}

TEST_F(BucketTest, Opening429UnderTheOldResetMeansOurResetEstimateWasEarly) {
  learn(window(100, 0, 60));
  clock_.advance(seconds(60));
  const grant probe = b_.take(0.0, now());
  const auto o = window(100, 0, 60);
  b_.settle(probe, settle_kind::not_processed, &o, now());
  const auto v = b_.view(now());
  EXPECT_EQ(v.phase, bucket_phase::confirmed);
  EXPECT_EQ(v.available, 0);
  ASSERT_TRUE(v.reset_at.has_value());
  EXPECT_EQ(*v.reset_at, now() + seconds(1));  // blind hold, no spin
}

TEST_F(BucketTest, LostRequestsCostUntilTheWindowEnds) {
  learn(window(10, 5, 60));
  b_.settle(b_.take(0.0, now()), settle_kind::lost, nullptr, now());
  EXPECT_EQ(b_.view(now()).available, 4);
  EXPECT_EQ(b_.view(now()).orphans, 1);
  clock_.advance(seconds(60));
  EXPECT_EQ(b_.view(now()).orphans, 0);
}

TEST_F(BucketTest, Bucket429WithBudgetLeftLearnsTheTokenShare) {
  learn(window(600, 400, 60));
  // Okta refuses while 300 are left: this credential may use only part of the bucket.
  const auto o = window(600, 300, 60);
  b_.settle(b_.take(0.0, now()), settle_kind::not_processed, &o, now());
  auto v = b_.view(now());
  EXPECT_EQ(v.capacity, 300);
  EXPECT_EQ(v.available, 0);
  clock_.advance(seconds(60));
  v = b_.view(now());
  EXPECT_EQ(v.available, 300);
}

TEST_F(BucketTest, ALearnedShareDecaysAfterAWindowWithoutAShare429) {
  learn(window(600, 400, 60));
  const auto refused = window(600, 300, 60);
  b_.settle(b_.take(0.0, now()), settle_kind::not_processed, &refused, now());
  EXPECT_EQ(b_.view(now()).capacity, 300);
  // The next window still shows the share: a 429 with budget left in it too.
  clock_.advance(seconds(60));
  learn(window(600, 599, 120));
  EXPECT_EQ(b_.view(now()).capacity, 300);  // the refused window does not decay
  const auto again = window(600, 300, 120);
  b_.settle(b_.take(0.0, now()), settle_kind::not_processed, &again, now());
  // A window with answers but no share 429: the next one re-probes with half kept off.
  clock_.advance(seconds(60));
  learn(window(600, 599, 180));
  EXPECT_EQ(b_.view(now()).capacity, 300);  // the window before had a share 429
  clock_.advance(seconds(60));
  learn(window(600, 599, 240));
  EXPECT_EQ(b_.view(now()).capacity, 450);
  clock_.advance(seconds(60));
  learn(window(600, 599, 300));
  EXPECT_EQ(b_.view(now()).capacity, 525);
  for (int w = 6; w < 20; ++w) {
    clock_.advance(seconds(60));
    learn(window(600, 599, 60 * w));
  }
  EXPECT_EQ(b_.view(now()).capacity, 600);  // fully re-probed
}

TEST_F(BucketTest, RetryAfterOnA429HoldsTheBucket) {
  learn(window(10, 5, 60));
  observation o;  // no X-Rate-Limit-* on this one, only Retry-After
  o.retry_after = seconds(5);
  b_.settle(b_.take(0.0, now()), settle_kind::not_processed, &o, now());
  const grant g = b_.take(0.0, now());
  EXPECT_FALSE(g.granted);
  EXPECT_EQ(g.retry_at, now() + seconds(5));
  clock_.advance(seconds(5));
  EXPECT_TRUE(b_.take(0.0, now()).granted);
}

TEST_F(BucketTest, A429WithoutHeadersPausesOneSecond) {
  learn(window(10, 5, 60));
  const observation none;
  b_.settle(b_.take(0.0, now()), settle_kind::not_processed, &none, now());
  EXPECT_FALSE(b_.take(0.0, now()).granted);
  clock_.advance(seconds(1));
  EXPECT_TRUE(b_.take(0.0, now()).granted);
}

TEST_F(BucketTest, ConcurrencyObservationLeavesTheWindowAlone) {
  learn(window(10, 5, 60));
  observation o;
  o.kind = limit_kind::concurrency;
  o.limit = 0;
  o.remaining = 0;
  o.reset_epoch = epoch0 + 115;
  b_.settle(b_.take(0.0, now()), settle_kind::not_processed, &o, now());
  const auto v = b_.view(now());
  EXPECT_EQ(v.limit, 10);
  EXPECT_EQ(v.available, 5);
}

TEST_F(BucketTest, ReserveIsKeptFromNonInteractiveTakes) {
  learn(window(10, 10, 60));
  int batch = 0;
  while (b_.take(0.2, now()).granted) ++batch;
  EXPECT_EQ(batch, 8);
  EXPECT_TRUE(b_.take(0.0, now()).granted);
  EXPECT_TRUE(b_.take(0.0, now()).granted);
  EXPECT_FALSE(b_.take(0.0, now()).granted);
}

TEST(BucketKeptTest, RoundsTheReserveShare) {
  struct row {
    double f;
    std::int64_t cap;
    std::int64_t want;
  };
  for (const row r : {row{0.0, 600, 0}, row{-1.0, 600, 0}, row{0.1, 600, 60}, row{0.25, 10, 3},
                      row{0.24, 10, 2}, row{1.0, 10, 10}, row{2.0, 10, 10}, row{0.5, 0, 0}}) {
    EXPECT_EQ(bucket::kept(r.f, r.cap), r.want) << r.f << " of " << r.cap;
  }
}

TEST_F(BucketTest, LateProbeOfAnEarlierPhaseDoesNotFreeTheCurrentProbe) {
  learn(window(10, 1, 60));
  const grant old = b_.take(0.0, now());
  clock_.advance(seconds(60));
  const grant first = b_.take(0.0, now());  // probe of the first opening
  ASSERT_TRUE(first.probe);
  // `old` is refused under the old reset: the window had not rolled, one second more.
  const auto o = window(10, 0, 60);
  b_.settle(old, settle_kind::not_processed, &o, now());
  ASSERT_EQ(b_.view(now()).phase, bucket_phase::confirmed);
  clock_.advance(seconds(1));
  const grant second = b_.take(0.0, now());  // probe of the second opening
  EXPECT_TRUE(second.probe);
  b_.settle(first, settle_kind::lost, nullptr, now());
  EXPECT_FALSE(b_.take(0.0, now()).granted);
  b_.settle(second, settle_kind::lost, nullptr, now());
  EXPECT_TRUE(b_.take(0.0, now()).granted);
}

// ---- window length learned from the headers ------------------------------------------

TEST_F(BucketTest, WindowIsTheSettingUntilTheFirstHeaders) {
  EXPECT_EQ(b_.view(now()).window, seconds(60));
  bucket custom(bucket_settings{seconds(10), 1, seconds(1)});
  EXPECT_EQ(custom.view(now()).window, seconds(10));
  const grant probe = b_.take(0.0, now());
  b_.settle(probe, settle_kind::answered, nullptr, now());  // no headers: nothing learned
  EXPECT_EQ(b_.view(now()).window, seconds(60));
}

TEST_F(BucketTest, WindowIsLearnedFromTheTimeToResetOfAFreshWindow) {
  observation o = window(30, 29, 2);
  o.reset_at = now() + milliseconds(2400);  // Date/reset rounding: errs long
  learn(o);
  EXPECT_EQ(b_.view(now()).window, milliseconds(2400));
  // Later answers of the same window show less time left: the longest one stays.
  clock_.advance(milliseconds(1500));
  o.reset_at = now() + milliseconds(900);
  o.remaining = 10;
  b_.settle(b_.take(0.0, now()), settle_kind::answered, &o, now());
  EXPECT_EQ(b_.view(now()).window, milliseconds(2400));
}

TEST_F(BucketTest, WindowFirstSeenLateGrowsWhenAFreshWindowIsSeen) {
  // The first answer lands 1.7 s into a 2 s window a neighbour opened.
  observation o = window(30, 5, 1);
  o.reset_at = now() + milliseconds(300);
  learn(o);
  EXPECT_EQ(b_.view(now()).window, seconds(1));  // resets are whole seconds: never below one
  clock_.advance(milliseconds(300));
  const grant probe = b_.take(0.0, now());
  ASSERT_TRUE(probe.probe);
  o = window(30, 29, 3);
  o.reset_at = now() + milliseconds(2100);
  b_.settle(probe, settle_kind::answered, &o, now());
  EXPECT_EQ(b_.view(now()).window, milliseconds(2100));
}

TEST_F(BucketTest, AShorterWindowReplacesALongerOneAfterTheRememberedWindows) {
  learn(window(100, 99, 60));
  EXPECT_EQ(b_.view(now()).window, seconds(60));
  std::int64_t reset_s = 60;
  for (std::size_t i = 1; i <= bucket::window_memory; ++i) {
    clock_.advance(*b_.view(now()).reset_at - now());
    reset_s += 2;
    observation o = window(100, 99, reset_s);
    o.reset_at = now() + seconds(2);
    const grant probe = b_.take(0.0, now());
    ASSERT_TRUE(probe.probe) << i;
    b_.settle(probe, settle_kind::answered, &o, now());
    EXPECT_EQ(b_.view(now()).window, i < bucket::window_memory ? seconds(60) : seconds(2)) << i;
  }
}

TEST_F(BucketTest, LateAnswerOfThePreviousShortWindowDoesNotDrainTheNewOne) {
  // 2 s windows (a test double; Okta's per-user buckets are 10 s): with a 60 s assumption
  // the previous window's Remaining 0 would count as this window's and stall it until its end.
  observation o = window(30, 29, 2);
  o.reset_at = now() + seconds(2);
  learn(o);
  const grant old = b_.take(0.0, now());
  clock_.advance(seconds(2));
  const grant probe = b_.take(0.0, now());
  ASSERT_TRUE(probe.probe);
  o = window(30, 29, 4);
  o.reset_at = now() + seconds(2);
  b_.settle(probe, settle_kind::answered, &o, now());
  ASSERT_EQ(b_.view(now()).available, 28);  // `old` still in flight
  o = window(30, 0, 2);                     // `old` was the previous window's last
  o.reset_at = now();
  b_.settle(old, settle_kind::answered, &o, now());
  const auto v = b_.view(now());
  EXPECT_EQ(v.remaining, 29);
  EXPECT_EQ(v.available, 29);
  EXPECT_EQ(v.reset_epoch, epoch0 + 4);
}

TEST_F(BucketTest, ConcurrencyAndPastResetsTeachNoWindow) {
  observation c;
  c.kind = limit_kind::concurrency;
  c.limit = 0;
  c.remaining = 0;
  c.reset_epoch = epoch0 + 115;
  c.reset_at = now() + seconds(115);  // only a hint, ~2 min ahead (docs/okta-behaviour.md)
  b_.settle(b_.take(0.0, now()), settle_kind::not_processed, &c, now());
  EXPECT_EQ(b_.view(now()).window, seconds(60));
  observation past = window(30, 0, 0);
  past.reset_at = now();  // the parser clamps a reset behind us to now
  b_.settle(b_.take(0.0, now()), settle_kind::not_processed, &past, now());
  EXPECT_EQ(b_.view(now()).window, seconds(60));
}

}  // namespace
}  // namespace okta_sidecar::ratelimit
