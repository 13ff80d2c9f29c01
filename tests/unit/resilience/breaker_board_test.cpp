// The shared breaker board: the pure breakers behind one lock, and the listener it tells when a
// half-open probe reports (the shell wakes the requests it held meanwhile).
#include "okta_sidecar/resilience/breaker_board.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace okta_sidecar::resilience {
namespace {

using std::chrono::seconds;

const std::string host = "acme.okta.com";

breaker_settings one_failure_opens() {
  breaker_settings s;
  s.failure_threshold = 1;
  s.open_time = seconds(10);
  s.max_open_time = seconds(10);
  s.half_open_probes = 1;
  return s;
}

// Opens the host's breaker at t0 and lets its one probe out at t0 + 10 s.
time_point open_and_probe(breaker_board& b, time_point t0) {
  b.record(host, outcome::failure, false, t0);
  const time_point later = t0 + seconds(10);
  EXPECT_TRUE(b.try_acquire(host, later).probe);
  return later;
}

TEST(BreakerBoard, OpenBreakerAnswersAtOnceWithItsRetryAfter) {
  breaker_board b(one_failure_opens(), {});
  const time_point t0{};
  b.record(host, outcome::failure, false, t0);
  const auto p = b.try_acquire(host, t0 + seconds(4));
  EXPECT_FALSE(p.allowed);
  EXPECT_FALSE(p.hold);
  EXPECT_EQ(p.retry_after, seconds(6));
  const auto st = b.states(t0 + seconds(4));
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].host, host);
  EXPECT_EQ(st[0].state, breaker_state::open);
  EXPECT_EQ(st[0].retry_after, seconds(6));
  EXPECT_EQ(st[0].opened, 1u);
  EXPECT_EQ(b.size(), 1u);
}

TEST(BreakerBoard, RequestsDuringAProbeAreHeldAndTheProbeOutcomeIsReported) {
  std::vector<std::string> reported;
  breaker_board b(one_failure_opens(), {}, [&reported](const std::string& h) { reported.push_back(h); });
  const time_point now = open_and_probe(b, time_point{});
  EXPECT_TRUE(b.try_acquire(host, now).hold);
  b.record(host, outcome::failure, false, now);  // not the probe: nothing to report
  EXPECT_TRUE(reported.empty());
  b.record(host, outcome::success, true, now);
  EXPECT_EQ(reported, std::vector<std::string>{host});
  const auto p = b.try_acquire(host, now);
  EXPECT_TRUE(p.allowed);
  EXPECT_FALSE(p.hold);
}

TEST(BreakerBoard, ReleasedProbeIsReportedToo) {
  std::vector<std::string> reported;
  breaker_board b(one_failure_opens(), {}, [&reported](const std::string& h) { reported.push_back(h); });
  const time_point now = open_and_probe(b, time_point{});
  b.release_probe(host, now);
  EXPECT_EQ(reported, std::vector<std::string>{host});
  EXPECT_TRUE(b.try_acquire(host, now).probe);  // the next request is the new probe
}

TEST(BreakerBoard, SettingsUpdateKeepsEachHostsState) {
  breaker_board b(one_failure_opens(), {});
  const time_point t0{};
  b.record(host, outcome::failure, false, t0);
  auto s = one_failure_opens();
  s.failure_threshold = 5;
  b.update_settings(s, {});
  EXPECT_FALSE(b.try_acquire(host, t0 + seconds(1)).allowed);  // still open
}

}  // namespace
}  // namespace okta_sidecar::resilience
