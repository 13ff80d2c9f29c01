#include "okta_sidecar/metrics/history.hpp"

#include <gtest/gtest.h>

namespace okta_sidecar::metrics {
namespace {

history::bucket_sample sample(std::string bucket, std::int64_t limit, std::int64_t remaining,
                              double absorbed = 0, double wait_sum = 0, double wait_count = 0) {
  return {"acme.okta.com", std::move(bucket), limit, remaining, 2, 1, absorbed, wait_sum, wait_count};
}

TEST(History, ColumnsHoldOnePointPerSampleWithUsedAsLimitMinusRemaining) {
  history h(5000, 4);
  h.record(1000, {sample("users", 600, 450)});
  h.record(6000, {sample("users", 600, 300)});
  const auto doc = h.to_json();
  EXPECT_EQ(doc["interval_ms"], 5000);
  EXPECT_EQ(doc["span_ms"], 20000);
  ASSERT_EQ(doc["buckets"].size(), 1u);
  const auto& b = doc["buckets"][0];
  EXPECT_EQ(b["host"], "acme.okta.com");
  EXPECT_EQ(b["bucket"], "users");
  EXPECT_EQ(b["t"], nlohmann::json({1000, 6000}));
  EXPECT_EQ(b["used"], nlohmann::json({150, 300}));
  EXPECT_EQ(b["limit"], nlohmann::json({600, 600}));
  EXPECT_EQ(b["queued"], nlohmann::json({2, 2}));
  EXPECT_EQ(b["inflight"], nlohmann::json({1, 1}));
}

TEST(History, CountersBecomePerIntervalFiguresAndWaitIsTheIntervalMean) {
  history h(5000, 10);
  h.record(0, {sample("users", 10, 0, /*absorbed*/ 7, /*wait_sum*/ 1.0, /*count*/ 4)});
  h.record(5000, {sample("users", 10, 0, 10, 3.0, 8)});   // 3 absorbed, 2 s over 4 waits
  h.record(10000, {sample("users", 10, 0, 10, 3.0, 8)});  // nothing new
  const auto doc = h.to_json();
  const auto& b = doc["buckets"][0];
  EXPECT_EQ(b["absorbed_429"], nlohmann::json({0.0, 3.0, 0.0}));
  EXPECT_TRUE(b["queue_wait_ms"][0].is_null());
  EXPECT_DOUBLE_EQ(b["queue_wait_ms"][1].get<double>(), 500.0);
  EXPECT_TRUE(b["queue_wait_ms"][2].is_null());
}

TEST(History, RingKeepsTheNewestCapacityPoints) {
  history h(5000, 3);
  for (int i = 0; i < 10; ++i) h.record(i * 5000, {sample("users", 10, 10 - i)});
  const auto doc = h.to_json();
  const auto& b = doc["buckets"][0];
  EXPECT_EQ(b["t"], nlohmann::json({35000, 40000, 45000}));
}

TEST(History, UnknownLimitGivesNullUsed) {
  history h;
  history::bucket_sample s{"acme.okta.com", "users", std::nullopt, std::nullopt, 0, 0, 0, 0, 0};
  h.record(0, {s});
  const auto doc = h.to_json();
  const auto& b = doc["buckets"][0];
  EXPECT_TRUE(b["used"][0].is_null());
  EXPECT_TRUE(b["limit"][0].is_null());
}

TEST(History, BucketsAreBoundedAndForgottenAfterAWholeSpan) {
  history h(1000, 5, /*max_buckets*/ 2);
  h.record(0, {sample("a", 1, 1), sample("b", 1, 1), sample("c", 1, 1)});
  EXPECT_EQ(h.to_json()["buckets"].size(), 2u);
  h.record(3000, {sample("a", 1, 1)});
  EXPECT_EQ(h.to_json()["buckets"].size(), 2u);  // b is 3 s old, the span is 5 s
  h.record(7000, {sample("a", 1, 1)});
  const auto doc = h.to_json();
  ASSERT_EQ(doc["buckets"].size(), 1u);
  EXPECT_EQ(doc["buckets"][0]["bucket"], "a");
}

TEST(History, ACounterThatGoesBackRestartsAtZero) {
  history h(1000, 5);
  h.record(0, {sample("a", 1, 1, 5)});
  h.record(1000, {sample("a", 1, 1, 2)});
  h.record(2000, {sample("a", 1, 1, 4)});
  const auto doc = h.to_json();
  EXPECT_EQ(doc["buckets"][0]["absorbed_429"], nlohmann::json({0.0, 0.0, 2.0}));
}

}  // namespace
}  // namespace okta_sidecar::metrics
