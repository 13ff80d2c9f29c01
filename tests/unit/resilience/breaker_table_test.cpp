// Issue 14: breakers keyed by host stay bounded (idle TTL, then LRU with closed ones first).
#include "okta_sidecar/resilience/breaker_table.hpp"

#include <gtest/gtest.h>

#include <string>

namespace okta_sidecar::resilience {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

breaker_settings one_failure_opens() {
  breaker_settings s;
  s.failure_threshold = 1;
  s.open_time = minutes(5);
  s.max_open_time = minutes(5);
  return s;
}

TEST(BreakerTable, ClosedEntriesIdlePastTheTtlAreDropped) {
  breaker_table t(one_failure_opens(), {100, minutes(10)});
  time_point now{};
  t.at("a.okta.com", now);
  t.at("b.okta.com", now);
  now += minutes(9);
  t.at("b.okta.com", now);  // b used again
  now += minutes(2);
  t.sweep(now);
  EXPECT_EQ(t.size(), 1u) << "a idle 11 min goes, b idle 2 min stays";
}

TEST(BreakerTable, OpenBreakersSurviveTheIdleSweep) {
  breaker_table t(one_failure_opens(), {100, minutes(1)});
  time_point now{};
  t.at("down.okta.com", now).record(outcome::failure, false, now);
  now += seconds(90);
  t.sweep(now);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t.at("down.okta.com", now).state(now), breaker_state::open);
}

TEST(BreakerTable, AtTheCapTheLeastRecentlyUsedClosedEntryMakesRoom) {
  breaker_table t(one_failure_opens(), {3, minutes(10)});
  time_point now{};
  t.at("open.okta.com", now).record(outcome::failure, false, now);  // oldest, but open
  now += seconds(1);
  t.at("a.okta.com", now);
  now += seconds(1);
  t.at("b.okta.com", now);
  now += seconds(1);
  t.at("c.okta.com", now);
  EXPECT_EQ(t.size(), 3u);
  std::vector<std::string> hosts;
  t.for_each([&](const std::string& h, const circuit_breaker&) { hosts.push_back(h); });
  EXPECT_EQ(hosts, (std::vector<std::string>{"b.okta.com", "c.okta.com", "open.okta.com"}));
}

TEST(BreakerTable, TensOfThousandsOfHostsStayAtTheCap) {
  breaker_table t(one_failure_opens(), {1024, minutes(10)});
  time_point now{};
  for (int i = 0; i < 20000; ++i)
    t.at("h" + std::to_string(i) + ".okta.com", now += std::chrono::milliseconds(1));
  EXPECT_EQ(t.size(), 1024u);
}

}  // namespace
}  // namespace okta_sidecar::resilience
