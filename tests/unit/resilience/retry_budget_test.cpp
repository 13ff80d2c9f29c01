#include "okta_sidecar/resilience/retry_budget.hpp"

#include <gtest/gtest.h>

namespace okta_sidecar::resilience {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const time_point t0 = time_point{} + std::chrono::hours(1);

retry_settings budget(double fraction, std::uint32_t floor) {
  retry_settings s;
  s.budget_fraction = fraction;
  s.budget_min_retries = floor;
  s.budget_window = seconds(10);
  return s;
}

int spend_all(retry_budget& b, time_point now) {
  int n = 0;
  while (b.try_spend(now) && n < 100000) ++n;
  return n;
}

TEST(RetryBudget, FloorAllowsRetriesWithoutTraffic) {
  retry_budget b(budget(0.2, 3));
  EXPECT_EQ(spend_all(b, t0), 3);
  EXPECT_EQ(b.retries_in_window(t0), 3u);
}

TEST(RetryBudget, ZeroFloorZeroTrafficAllowsNothing) {
  retry_budget b(budget(0.2, 0));
  EXPECT_FALSE(b.try_spend(t0));
}

TEST(RetryBudget, FractionOfRequestsPlusFloor) {
  retry_budget b(budget(0.2, 2));
  for (int i = 0; i < 50; ++i) b.on_request(t0);
  EXPECT_EQ(b.requests_in_window(t0), 50u);
  EXPECT_EQ(spend_all(b, t0), 12);  // 2 + 0.2 * 50
}

TEST(RetryBudget, ExhaustionBoundaryWithFractionalAllowance) {
  retry_budget b(budget(0.2, 0));
  for (int i = 0; i < 14; ++i) b.on_request(t0);  // 2.8 allowed -> 2
  EXPECT_EQ(spend_all(b, t0), 2);
  b.on_request(t0);  // 15 requests -> 3.0 allowed
  EXPECT_TRUE(b.try_spend(t0));
  EXPECT_FALSE(b.try_spend(t0));
}

TEST(RetryBudget, RefillsAsTheWindowSlides) {
  retry_budget b(budget(0.5, 0));
  for (int i = 0; i < 10; ++i) b.on_request(t0);
  EXPECT_EQ(spend_all(b, t0), 5);
  // Still inside the window: no refill without new requests.
  EXPECT_FALSE(b.try_spend(t0 + seconds(9)));
  // New traffic later in the window earns more retries.
  for (int i = 0; i < 4; ++i) b.on_request(t0 + seconds(5));
  EXPECT_EQ(spend_all(b, t0 + seconds(5)), 2);  // 14 * 0.5 = 7, 5 used
  // After the first slice has aged out, its requests and retries are forgotten:
  // 4 requests -> 2 allowed, 2 spent at t0+5 s.
  EXPECT_EQ(b.requests_in_window(t0 + seconds(10)), 4u);
  EXPECT_EQ(b.retries_in_window(t0 + seconds(10)), 2u);
  EXPECT_FALSE(b.try_spend(t0 + seconds(10)));
  // Once everything aged out, only the floor (0) remains.
  EXPECT_EQ(b.requests_in_window(t0 + seconds(16)), 0u);
  EXPECT_EQ(b.retries_in_window(t0 + seconds(16)), 0u);
}

TEST(RetryBudget, SliceBoundaryJustInsideAndOutsideTheWindow) {
  retry_budget b(budget(1.0, 0));
  b.on_request(t0);  // slice length 1 s; t0 is on a slice boundary
  EXPECT_EQ(b.requests_in_window(t0 + seconds(10) - milliseconds(1)), 1u);
  EXPECT_EQ(b.requests_in_window(t0 + seconds(10)), 0u);
}

TEST(RetryBudget, OutageCannotMultiplyLoad) {
  // 1000 requests all failing: retries are capped at floor + 20 %.
  retry_budget b(budget(0.2, 10));
  int retries = 0;
  for (int i = 0; i < 1000; ++i) {
    const time_point now = t0 + milliseconds(i * 5);  // 5 s of traffic
    b.on_request(now);
    if (b.try_spend(now)) ++retries;
  }
  EXPECT_LE(retries, 10 + 200);
  EXPECT_GE(retries, 200);
}

TEST(RetryBudget, UpdateSettingsRestartsWindow) {
  retry_budget b(budget(0.2, 1));
  for (int i = 0; i < 10; ++i) b.on_request(t0);
  b.update_settings(budget(0.2, 1));
  EXPECT_EQ(b.requests_in_window(t0), 0u);
  EXPECT_EQ(spend_all(b, t0), 1);
}

TEST(RetryBudget, ZeroWindowDoesNotDivideByZero) {
  retry_settings s = budget(0.5, 1);
  s.budget_window = duration::zero();
  retry_budget b(s);
  b.on_request(t0);
  EXPECT_TRUE(b.try_spend(t0));
  EXPECT_EQ(b.requests_in_window(t0 + seconds(1)), 0u);
}

}  // namespace
}  // namespace okta_sidecar::resilience
