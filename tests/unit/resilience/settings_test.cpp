#include "okta_sidecar/resilience/settings.hpp"

#include <gtest/gtest.h>

namespace okta_sidecar::resilience {
namespace {

TEST(Settings, BreakerFromConfig) {
  config::circuit_breaker_config c;
  c.failure_threshold = 7;
  c.open_ms = 1500;
  c.max_open_ms = 9000;
  c.half_open_probes = 2;
  const breaker_settings s = to_breaker_settings(c);
  EXPECT_EQ(s.failure_threshold, 7u);
  EXPECT_EQ(s.open_time, std::chrono::milliseconds(1500));
  EXPECT_EQ(s.max_open_time, std::chrono::milliseconds(9000));
  EXPECT_EQ(s.half_open_probes, 2u);
  EXPECT_EQ(s.window_size, 0u);
}

TEST(Settings, RetryFromConfig) {
  config::retry_config c;
  c.max_attempts = 4;
  c.base_backoff_ms = 50;
  c.max_backoff_ms = 700;
  c.budget_fraction = 0.1;
  const retry_settings s = to_retry_settings(c);
  EXPECT_EQ(s.max_attempts, 4u);
  EXPECT_EQ(s.base_backoff, std::chrono::milliseconds(50));
  EXPECT_EQ(s.max_backoff, std::chrono::milliseconds(700));
  EXPECT_DOUBLE_EQ(s.budget_fraction, 0.1);
}

}  // namespace
}  // namespace okta_sidecar::resilience
