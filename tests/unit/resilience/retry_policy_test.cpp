#include "okta_sidecar/resilience/retry_policy.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace okta_sidecar::resilience {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const time_point t0 = time_point{} + std::chrono::hours(1);
const time_point far = t0 + std::chrono::hours(1);

TEST(IsIdempotent, Methods) {
  for (const char* m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}) {
    EXPECT_TRUE(is_idempotent(m)) << m;
  }
  for (const char* m : {"POST", "PATCH", "CONNECT", "get", "Get", "", "GETX", " GET"}) {
    EXPECT_FALSE(is_idempotent(m)) << m;
  }
}

TEST(DecideRetry, SafetyTable) {
  struct row {
    const char* method;
    failure_kind kind;
    bool retry;
  };
  const std::vector<row> rows = {
      {"POST", failure_kind::connect_failed, true},    {"POST", failure_kind::tls_failed, true},
      {"POST", failure_kind::reset_before_send, true}, {"POST", failure_kind::reset_after_send, false},
      {"POST", failure_kind::response_timeout, false}, {"POST", failure_kind::upstream_5xx, false},
      {"PATCH", failure_kind::upstream_5xx, false},    {"PATCH", failure_kind::connect_failed, true},
      {"GET", failure_kind::connect_failed, true},     {"GET", failure_kind::reset_after_send, true},
      {"GET", failure_kind::response_timeout, true},   {"GET", failure_kind::upstream_5xx, true},
      {"PUT", failure_kind::upstream_5xx, true},       {"DELETE", failure_kind::response_timeout, true},
      {"HEAD", failure_kind::reset_after_send, true},  {"OPTIONS", failure_kind::upstream_5xx, true},
  };
  retry_settings s;
  s.retry_on_timeout = true;  // the safety table, with timeouts opted in
  for (const auto& r : rows) {
    const retry_decision d = decide_retry(s, r.method, r.kind, 1, t0, far, 0.5);
    EXPECT_EQ(d.retry, r.retry) << r.method << " " << to_string(r.kind);
    EXPECT_STREQ(d.reason, r.retry ? retry_reason::retry : retry_reason::not_idempotent)
        << r.method << " " << to_string(r.kind);
  }
}

TEST(DecideRetry, TimeoutsAreNotRetriedByDefault) {
  const retry_settings s;  // retry.on_timeout: false
  for (const char* m : {"GET", "HEAD", "PUT", "POST"}) {
    const auto d = decide_retry(s, m, failure_kind::response_timeout, 1, t0, far, 0.5);
    EXPECT_FALSE(d.retry) << m;
    EXPECT_STREQ(d.reason, retry_reason::timeout) << m;
  }
  // Other failures keep their rules.
  EXPECT_TRUE(decide_retry(s, "GET", failure_kind::upstream_5xx, 1, t0, far, 0.5).retry);
  EXPECT_TRUE(decide_retry(s, "POST", failure_kind::connect_failed, 1, t0, far, 0.5).retry);
}

TEST(DecideRetry, AttemptsBoundary) {
  retry_settings s;
  s.max_attempts = 3;
  EXPECT_TRUE(decide_retry(s, "GET", failure_kind::upstream_5xx, 1, t0, far, 0.0).retry);
  EXPECT_TRUE(decide_retry(s, "GET", failure_kind::upstream_5xx, 2, t0, far, 0.0).retry);
  const auto d = decide_retry(s, "GET", failure_kind::upstream_5xx, 3, t0, far, 0.0);
  EXPECT_FALSE(d.retry);
  EXPECT_STREQ(d.reason, retry_reason::attempts_exhausted);
  s.max_attempts = 1;  // retries off
  EXPECT_FALSE(decide_retry(s, "GET", failure_kind::connect_failed, 1, t0, far, 0.0).retry);
  s.max_attempts = 0;
  EXPECT_FALSE(decide_retry(s, "GET", failure_kind::connect_failed, 1, t0, far, 0.0).retry);
}

TEST(BackoffCeiling, DoublesUpToCap) {
  retry_settings s;
  s.base_backoff = milliseconds(100);
  s.max_backoff = milliseconds(1000);
  const std::vector<std::pair<std::uint32_t, milliseconds>> rows = {
      {0, milliseconds(100)},  {1, milliseconds(100)},   {2, milliseconds(200)},
      {3, milliseconds(400)},  {4, milliseconds(800)},   {5, milliseconds(1000)},
      {6, milliseconds(1000)}, {64, milliseconds(1000)}, {4000000000u, milliseconds(1000)},
  };
  for (const auto& [n, expected] : rows) EXPECT_EQ(backoff_ceiling(s, n), expected) << n;
}

TEST(BackoffCeiling, BaseAboveCapIsCapped) {
  retry_settings s;
  s.base_backoff = seconds(5);
  s.max_backoff = seconds(2);
  EXPECT_EQ(backoff_ceiling(s, 1), seconds(2));
}

TEST(BackoffCeiling, HugeCapDoesNotOverflow) {
  retry_settings s;
  s.base_backoff = milliseconds(1);
  s.max_backoff = duration::max();
  const duration d = backoff_ceiling(s, 200);
  EXPECT_GT(d, std::chrono::hours(24 * 365));
  EXPECT_LE(d, duration::max());
}

TEST(DecideRetry, FullJitterBounds) {
  retry_settings s;
  s.max_attempts = 10;
  s.base_backoff = milliseconds(100);
  s.max_backoff = seconds(2);
  for (std::uint32_t n = 1; n <= 8; ++n) {
    const duration ceiling = backoff_ceiling(s, n);
    const auto lo = decide_retry(s, "GET", failure_kind::upstream_5xx, n, t0, far, 0.0);
    EXPECT_EQ(lo.delay, duration::zero()) << n;
    const auto mid = decide_retry(s, "GET", failure_kind::upstream_5xx, n, t0, far, 0.5);
    EXPECT_EQ(mid.delay, ceiling / 2) << n;
    const auto hi = decide_retry(s, "GET", failure_kind::upstream_5xx, n, t0, far, 0.999999);
    EXPECT_LT(hi.delay, ceiling) << n;
    EXPECT_GT(hi.delay, ceiling * 999 / 1000) << n;
  }
}

TEST(DecideRetry, OutOfRangeRandomIsClamped) {
  const retry_settings s;
  EXPECT_EQ(decide_retry(s, "GET", failure_kind::upstream_5xx, 1, t0, far, -3.0).delay, duration::zero());
  EXPECT_LE(decide_retry(s, "GET", failure_kind::upstream_5xx, 1, t0, far, 7.0).delay, backoff_ceiling(s, 1));
}

TEST(DecideRetry, HugeBackoffStaysInRange) {
  retry_settings s;
  s.max_attempts = 100;
  s.base_backoff = milliseconds(1);
  s.max_backoff = duration::max();
  const auto d = decide_retry(s, "GET", failure_kind::upstream_5xx, 90, t0, time_point::max(), 1.0);
  EXPECT_GE(d.delay, duration::zero());
  EXPECT_LE(d.delay, duration::max());
}

TEST(DecideRetry, DeadlineBoundaries) {
  retry_settings s;
  s.base_backoff = milliseconds(100);
  // delay = 0.5 * 100 ms = 50 ms
  auto d = decide_retry(s, "GET", failure_kind::upstream_5xx, 1, t0, t0 + milliseconds(51), 0.5);
  EXPECT_TRUE(d.retry);
  EXPECT_EQ(d.delay, milliseconds(50));
  d = decide_retry(s, "GET", failure_kind::upstream_5xx, 1, t0, t0 + milliseconds(50), 0.5);
  EXPECT_FALSE(d.retry);  // would start exactly at the deadline
  EXPECT_STREQ(d.reason, retry_reason::deadline);
  d = decide_retry(s, "GET", failure_kind::upstream_5xx, 1, t0, t0, 0.0);
  EXPECT_FALSE(d.retry);
  EXPECT_STREQ(d.reason, retry_reason::deadline);
  d = decide_retry(s, "GET", failure_kind::upstream_5xx, 1, t0, t0 - seconds(1), 0.0);
  EXPECT_FALSE(d.retry);
  EXPECT_STREQ(d.reason, retry_reason::deadline);
}

TEST(DecideRetry, SafetyIsCheckedBeforeDeadline) {
  const retry_settings s;
  const auto d = decide_retry(s, "POST", failure_kind::upstream_5xx, 1, t0, t0, 0.0);
  EXPECT_STREQ(d.reason, retry_reason::not_idempotent);
}

TEST(FailedBeforeSend, Kinds) {
  EXPECT_TRUE(failed_before_send(failure_kind::connect_failed));
  EXPECT_TRUE(failed_before_send(failure_kind::tls_failed));
  EXPECT_TRUE(failed_before_send(failure_kind::reset_before_send));
  EXPECT_FALSE(failed_before_send(failure_kind::reset_after_send));
  EXPECT_FALSE(failed_before_send(failure_kind::response_timeout));
  EXPECT_FALSE(failed_before_send(failure_kind::upstream_5xx));
}

TEST(FailureKind, ToString) {
  EXPECT_STREQ(to_string(failure_kind::connect_failed), "connect_failed");
  EXPECT_STREQ(to_string(failure_kind::tls_failed), "tls_failed");
  EXPECT_STREQ(to_string(failure_kind::reset_before_send), "reset_before_send");
  EXPECT_STREQ(to_string(failure_kind::reset_after_send), "reset_after_send");
  EXPECT_STREQ(to_string(failure_kind::response_timeout), "response_timeout");
  EXPECT_STREQ(to_string(failure_kind::upstream_5xx), "upstream_5xx");
}

}  // namespace
}  // namespace okta_sidecar::resilience
