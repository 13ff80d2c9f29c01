#include "okta_sidecar/ratelimit/local_bucket_store.hpp"

#include <gtest/gtest.h>

#include "fake_clock.hpp"

namespace okta_sidecar::ratelimit {
namespace {

using std::chrono::seconds;

observation window(std::int64_t limit, std::int64_t remaining, time_point reset_at) {
  observation o;
  o.kind = limit_kind::window;
  o.limit = limit;
  o.remaining = remaining;
  o.reset_epoch = 1'700'000'060;
  o.reset_at = reset_at;
  return o;
}

TEST(LocalBucketStoreTest, UnknownKeyHasNoView) {
  const testing::fake_clock clock;
  const local_bucket_store store;
  EXPECT_FALSE(store.view({"acme.okta.com", "users"}, clock.now()).has_value());
}

TEST(LocalBucketStoreTest, KeysAreIndependentPerHostAndBucket) {
  const testing::fake_clock clock;
  const auto t = clock.now();
  local_bucket_store store;
  const bucket_key users{"acme.okta.com", "users"};
  const bucket_key groups{"acme.okta.com", "groups"};
  const bucket_key other_tenant{"beta.okta.com", "users"};
  const grant g = store.take(users, 0.0, t);
  ASSERT_TRUE(g.probe);
  const auto o = window(600, 0, t + seconds(60));
  store.settle(users, g, settle_kind::answered, &o, t);
  EXPECT_FALSE(store.take(users, 0.0, t).granted);
  EXPECT_TRUE(store.take(groups, 0.0, t).probe);
  EXPECT_TRUE(store.take(other_tenant, 0.0, t).probe);
  EXPECT_EQ(store.size(), 3u);
  EXPECT_EQ(store.view(users, t)->limit, 600);
  EXPECT_FALSE(store.view(groups, t)->limit.has_value());
}

TEST(LocalBucketStoreTest, UpdateSettingsReachesExistingBuckets) {
  const testing::fake_clock clock;
  local_bucket_store store;
  const bucket_key key{"acme.okta.com", "users"};
  EXPECT_TRUE(store.take(key, 0.0, clock.now()).granted);
  EXPECT_FALSE(store.take(key, 0.0, clock.now()).granted);
  bucket_settings s;
  s.opening_probes = 3;
  store.update_settings(s);
  EXPECT_TRUE(store.take(key, 0.0, clock.now()).granted);
  EXPECT_TRUE(store.take(key, 0.0, clock.now()).granted);
  EXPECT_FALSE(store.take(key, 0.0, clock.now()).granted);
}

}  // namespace
}  // namespace okta_sidecar::ratelimit
