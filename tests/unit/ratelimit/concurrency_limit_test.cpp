#include "okta_sidecar/ratelimit/concurrency_limit.hpp"

#include <gtest/gtest.h>

#include <map>

#include "fake_clock.hpp"

namespace okta_sidecar::ratelimit {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class ConcurrencyLimitTest : public ::testing::Test {
 protected:
  time_point now() const { return clock_.now(); }
  // `n` completions with the cap in full use.
  static void saturated_successes(concurrency_limit& l, int n, time_point at) {
    for (int i = 0; i < n; ++i) l.on_success(l.cap(), at);
  }
  testing::fake_clock clock_;
};

TEST_F(ConcurrencyLimitTest, StartsAtTheSeedClampedToTheCeiling) {
  EXPECT_EQ(concurrency_limit({15, 75}).cap(), 15u);
  EXPECT_EQ(concurrency_limit({15, 10}).cap(), 10u);
  EXPECT_EQ(concurrency_limit({0, 10}).cap(), 1u);
  EXPECT_EQ(concurrency_limit({15, 75}).source(), concurrency_source::seed);
}

TEST_F(ConcurrencyLimitTest, GrowsOneSlotPerCapCompletionsInFullUseOnly) {
  concurrency_limit l({4, 75});
  for (int i = 0; i < 100; ++i) l.on_success(2, now());  // half used: tells nothing
  EXPECT_EQ(l.cap(), 4u);
  saturated_successes(l, 3, now());
  EXPECT_EQ(l.cap(), 4u);
  saturated_successes(l, 1, now());
  EXPECT_EQ(l.cap(), 5u);
  EXPECT_EQ(l.source(), concurrency_source::grown);
  saturated_successes(l, 5, now());
  EXPECT_EQ(l.cap(), 6u);
}

TEST_F(ConcurrencyLimitTest, NeverGrowsAboveMaxConcurrency) {
  concurrency_limit l({4, 5});
  saturated_successes(l, 1000, now());
  EXPECT_EQ(l.cap(), 5u);
}

TEST_F(ConcurrencyLimitTest, BacksOffMultiplicativelyOncePerOvershoot) {
  concurrency_limit l({20, 75});
  const auto e = l.epoch();
  EXPECT_TRUE(l.on_limited(20, e, now()));
  EXPECT_EQ(l.cap(), 15u);  // floor(20 x 0.75)
  EXPECT_EQ(l.refused(), 20u);
  EXPECT_EQ(l.source(), concurrency_source::backed_off);
  // The other 429s of the same overshoot (admitted before the decrease) do not compound.
  EXPECT_FALSE(l.on_limited(19, e, now()));
  EXPECT_FALSE(l.on_limited(18, e, now()));
  EXPECT_EQ(l.cap(), 15u);
  EXPECT_EQ(l.refused(), 18u);
  EXPECT_EQ(l.backoffs(), 1u);
  // ...but a stale 429 still keeps the cap below what Okta refused.
  EXPECT_FALSE(l.on_limited(10, e, now()));
  EXPECT_EQ(l.cap(), 9u);
}

TEST_F(ConcurrencyLimitTest, FloorsAtOne) {
  concurrency_limit l({1, 75});
  EXPECT_TRUE(l.on_limited(1, l.epoch(), now()));
  EXPECT_EQ(l.cap(), 1u);
}

TEST_F(ConcurrencyLimitTest, RemembersTheRefusedLevelAndReprobesOneStepPerInterval) {
  concurrency_limit l({20, 75, 0.75, seconds(60)});
  saturated_successes(l, 20, now());
  EXPECT_EQ(l.cap(), 21u);
  EXPECT_TRUE(l.on_limited(21, l.epoch(), now()));  // Okta's limit is 20
  EXPECT_EQ(l.cap(), 15u);
  // Regrows quickly to just below the refused level, then holds.
  saturated_successes(l, 2000, now() + seconds(30));
  EXPECT_EQ(l.cap(), 20u);
  // One step above only after the reprobe interval.
  saturated_successes(l, 20, now() + seconds(61));
  EXPECT_EQ(l.cap(), 21u);
  EXPECT_EQ(l.source(), concurrency_source::reprobed);
  // It held (the limit rose): the next step waits another interval.
  saturated_successes(l, 200, now() + seconds(100));
  EXPECT_EQ(l.cap(), 21u);
  saturated_successes(l, 21, now() + seconds(122));
  EXPECT_EQ(l.cap(), 22u);
}

TEST_F(ConcurrencyLimitTest, AdoptsTheFleetsMemory) {
  concurrency_limit fresh({15, 75});
  fresh.adopt({18, 19}, now());
  EXPECT_EQ(fresh.cap(), 18u);
  EXPECT_EQ(fresh.source(), concurrency_source::shared);
  EXPECT_EQ(fresh.refused(), 19u);
  saturated_successes(fresh, 1000, now() + seconds(1));
  EXPECT_EQ(fresh.cap(), 18u);  // 19 refused, just now
  // A learned cap only moves down on others' news.
  concurrency_limit learned({15, 75});
  saturated_successes(learned, 15, now());
  learned.adopt({30, std::nullopt}, now());
  EXPECT_EQ(learned.cap(), 16u);
  learned.adopt({10, 11}, now());
  EXPECT_EQ(learned.cap(), 10u);
  learned.adopt({0, std::nullopt}, now());  // nothing known: ignored
  EXPECT_EQ(learned.cap(), 10u);
}

TEST_F(ConcurrencyLimitTest, SettingsReloadKeepsWhatWasLearnedWithinTheNewCeiling) {
  concurrency_limit l({15, 75});
  l.update_settings({10, 75});
  EXPECT_EQ(l.cap(), 10u);  // nothing learned yet: the new seed
  l.on_limited(10, l.epoch(), now());
  l.update_settings({30, 75});
  EXPECT_EQ(l.cap(), 7u);
  l.update_settings({30, 5});
  EXPECT_EQ(l.cap(), 5u);
}

// Two bursts of 500 requests from 100 clients against an org limit of 20 in flight, 50 ms
// each (the storm): the seed never overshoots, growth finds 21 once, and the second
// burst does not rediscover it.
TEST_F(ConcurrencyLimitTest, TwoBurstsAgainstALimitOfTwentyCostAtMostOneOrTwo429s) {
  constexpr std::uint32_t okta_limit = 20;
  concurrency_limit l({15, 75});
  int refused = 0;
  for (int burst = 0; burst < 2; ++burst) {
    int left = 500;
    std::uint32_t inflight = 0;
    std::multimap<time_point, std::pair<bool, std::uint32_t>> done;  // at -> (refused, epoch)
    while (left > 0 || !done.empty()) {
      while (left > 0 && inflight < l.cap()) {
        ++inflight;
        --left;
        if (inflight > okta_limit) {
          ++refused;
          done.emplace(now() + milliseconds(1), std::pair{true, l.epoch()});
        } else {
          done.emplace(now() + milliseconds(50), std::pair{false, l.epoch()});
        }
      }
      const auto it = done.begin();
      clock_.advance(it->first - now());
      const auto [was_refused, epoch] = it->second;
      done.erase(it);
      if (was_refused) {
        l.on_limited(inflight, epoch, now());
        ++left;  // retried
      } else {
        l.on_success(inflight, now());
      }
      --inflight;
    }
    clock_.advance(seconds(5));
  }
  EXPECT_LE(refused, 2);
  EXPECT_GE(l.cap(), 15u);
  EXPECT_LE(l.cap(), okta_limit);
}

}  // namespace
}  // namespace okta_sidecar::ratelimit
