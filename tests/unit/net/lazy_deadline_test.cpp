#include "okta_sidecar/net/lazy_deadline.hpp"

#include <gtest/gtest.h>

namespace okta_sidecar::net {
namespace {

using namespace std::chrono_literals;

const time_point t0 = time_point{} + 1000s;

TEST(LazyDeadline, NothingSetIsNone) {
  lazy_deadline d;
  EXPECT_TRUE(d.none());
  d.at(time_point::max());  // expires_never
  EXPECT_TRUE(d.none());
}

// expires_after counts from the first wait after it, however long before that wait it was set.
TEST(LazyDeadline, AfterCountsFromTheFirstWait) {
  lazy_deadline d;
  d.after(400ms);
  EXPECT_FALSE(d.none());
  EXPECT_EQ(d.arm(t0 + 450ms), t0 + 850ms);  // set at t0, first wait 450 ms later
}

// Once fixed, it holds for every later wait: a head trickled in pieces does not renew it.
TEST(LazyDeadline, TheFirstWaitFixesItForTheLaterOnes) {
  lazy_deadline d;
  d.after(400ms);
  EXPECT_EQ(d.arm(t0), t0 + 400ms);
  EXPECT_EQ(d.arm(t0 + 200ms), t0 + 400ms);
  EXPECT_EQ(d.arm(t0 + 500ms), t0 + 400ms);  // passed: the caller times the wait out at once
}

// The next setting replaces it, whichever kind either is.
TEST(LazyDeadline, TheNextSettingReplacesIt) {
  lazy_deadline d;
  d.after(400ms);
  EXPECT_EQ(d.arm(t0), t0 + 400ms);
  d.after(100ms);
  EXPECT_EQ(d.arm(t0 + 300ms), t0 + 300ms + 100ms);
  d.at(t0 + 5s);
  EXPECT_EQ(d.arm(t0 + 1s), t0 + 5s);
  d.after(1s);
  d.at(t0 + 2s);  // an absolute deadline set after a pending duration wins
  EXPECT_EQ(d.arm(t0 + 3s), t0 + 2s);
  d.at(time_point::max());
  EXPECT_TRUE(d.none());
}

}  // namespace
}  // namespace okta_sidecar::net
