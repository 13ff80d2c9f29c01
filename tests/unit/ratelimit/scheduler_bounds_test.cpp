// Issue 14: the scheduler's state keyed by client input (bucket instances, hosts, the queue)
// stays bounded; eviction is idle TTL first, then least recently used.
#include <gtest/gtest.h>

#include <string>

#include "fake_clock.hpp"
#include "okta_sidecar/ratelimit/scheduler.hpp"

namespace okta_sidecar::ratelimit {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

class SchedulerBoundsTest : public ::testing::Test {
 protected:
  time_point now() const { return clock_.now(); }
  admission_request req(const bucket_key& key, duration max_wait = seconds(60)) const {
    return admission_request{key, 1, false, true, now() + max_wait};
  }
  // Submits and answers one request so the bucket holds nothing queued or in flight.
  void touch(scheduler& s, const bucket_key& key) {
    const verdict v = s.submit(req(key), now());
    ASSERT_EQ(v.kind, verdict_kind::admit);
    s.on_response(v.id, 200, observation{}, false, now());
    s.poll(now());
  }
  static scheduler_settings small(std::size_t ids = 3, std::size_t max_buckets = 16) {
    scheduler_settings st;
    st.max_instances_per_host = ids;
    st.max_buckets = max_buckets;
    st.bucket_idle_ttl = minutes(10);
    return st;
  }

  testing::fake_clock clock_;
};

TEST_F(SchedulerBoundsTest, IdsBeyondThePerHostCapShareTheOverflowBucket) {
  scheduler s(small(3));
  const std::string host = "acme.okta.com";
  for (int i = 0; i < 3; ++i) {
    const std::string b = "oauth2-token:as" + std::to_string(i);
    EXPECT_EQ(s.bucket_name(host, "oauth2-token", b, true, now()), b);
  }
  EXPECT_EQ(s.bucket_name(host, "oauth2-token", "oauth2-token:as3", true, now()), "oauth2-token:other");
  EXPECT_EQ(s.bucket_name(host, "oauth2-token", "oauth2-token:as999", true, now()), "oauth2-token:other");
  // Ids seen before keep their bucket; another group and another host have caps of their own.
  EXPECT_EQ(s.bucket_name(host, "oauth2-token", "oauth2-token:as1", true, now()), "oauth2-token:as1");
  EXPECT_EQ(s.bucket_name(host, "oauth2-authorize", "oauth2-authorize:x", true, now()), "oauth2-authorize:x");
  EXPECT_EQ(s.bucket_name("other.okta.com", "oauth2-token", "oauth2-token:as3", true, now()),
            "oauth2-token:as3");
  // Names without a client-chosen id pass through untouched.
  EXPECT_EQ(s.bucket_name(host, "users", "users", false, now()), "users");
}

TEST_F(SchedulerBoundsTest, TensOfThousandsOfIdsKeepTheMapAtTheCap) {
  scheduler s(small(64, 1024));
  for (int i = 0; i < 20000; ++i) {
    const std::string name =
        s.bucket_name("acme.okta.com", "oauth2-token", "oauth2-token:id" + std::to_string(i), true, now());
    touch(s, {"acme.okta.com", name});
  }
  EXPECT_EQ(s.bucket_count(), 65u);  // 64 ids + the overflow bucket
  EXPECT_EQ(s.host_count(), 1u);
}

TEST_F(SchedulerBoundsTest, IdleBucketsAreEvictedAfterTheTtlAndFreeTheirIdSlot) {
  scheduler s(small(2));
  const std::string host = "acme.okta.com";
  for (const char* id : {"oauth2-token:a", "oauth2-token:b"})
    touch(s, {host, s.bucket_name(host, "oauth2-token", id, true, now())});
  EXPECT_EQ(s.bucket_name(host, "oauth2-token", "oauth2-token:c", true, now()), "oauth2-token:other");
  clock_.advance(minutes(10) - seconds(1));
  s.poll(now());
  EXPECT_EQ(s.bucket_count(), 2u) << "not idle long enough yet";
  clock_.advance(seconds(75));  // the sweep walks every bucket, so it runs every ttl/8 at most
  s.poll(now());
  EXPECT_EQ(s.bucket_count(), 0u);
  EXPECT_EQ(s.host_count(), 0u) << "a host goes with its last bucket";
  EXPECT_EQ(s.bucket_name(host, "oauth2-token", "oauth2-token:c", true, now()), "oauth2-token:c");
}

TEST_F(SchedulerBoundsTest, BusyBucketsAreNeverEvicted) {
  scheduler s(small(8, 2));
  const bucket_key a{"acme.okta.com", "users"}, b{"acme.okta.com", "groups"}, c{"acme.okta.com", "apps"};
  const verdict va = s.submit(req(a), now());
  ASSERT_EQ(va.kind, verdict_kind::admit);  // in flight
  touch(s, b);
  clock_.advance(minutes(30));
  s.poll(now());
  EXPECT_EQ(s.bucket_count(), 1u) << "b idle past the TTL goes, a in flight stays";
  // At the cap (2) a new bucket takes the least recently used idle entry's place...
  touch(s, c);
  EXPECT_EQ(s.bucket_count(), 2u);
  const verdict vd = s.submit(req({"acme.okta.com", "logs"}), now());
  EXPECT_EQ(vd.kind, verdict_kind::admit) << "c was idle: evicted for logs";
  // ... and with every entry busy, a request for yet another bucket is refused, not stored.
  const verdict ve = s.submit(req({"acme.okta.com", "events"}), now());
  EXPECT_EQ(ve.kind, verdict_kind::reject);
  EXPECT_GE(ve.retry_after, seconds(1));
  EXPECT_EQ(s.bucket_count(), 2u);
  s.on_response(va.id, 200, observation{}, false, now());
  s.on_response(vd.id, 200, observation{}, false, now());
}

TEST_F(SchedulerBoundsTest, LeastRecentlyUsedIdleBucketMakesRoom) {
  scheduler s(small(8, 3));
  const bucket_key a{"h.okta.com", "a"}, b{"h.okta.com", "b"}, c{"h.okta.com", "c"}, d{"h.okta.com", "d"};
  touch(s, a);
  clock_.advance(seconds(1));
  touch(s, b);
  clock_.advance(seconds(1));
  touch(s, c);
  clock_.advance(seconds(1));
  touch(s, a);  // a is now the most recent; b the least
  touch(s, d);
  EXPECT_EQ(s.bucket_count(), 3u);
  const auto list = s.buckets(now());
  for (const auto& st : list) EXPECT_NE(st.key.bucket, "b");
}

TEST_F(SchedulerBoundsTest, QueueTotalBoundsEveryBucketTogether) {
  scheduler_settings st;
  st.max_queue = 100;
  st.max_queue_total = 5;
  st.max_concurrency = 1;
  scheduler s(st);
  // One request in flight holds the host's only slot; the rest queue across buckets.
  ASSERT_EQ(s.submit(req({"acme.okta.com", "b0"}), now()).kind, verdict_kind::admit);
  int queued = 0, rejected = 0;
  for (int i = 0; i < 20; ++i) {
    const verdict v = s.submit(req({"acme.okta.com", "b" + std::to_string(i % 4)}), now());
    (v.kind == verdict_kind::queue ? queued : rejected)++;
  }
  EXPECT_EQ(queued, 5);
  EXPECT_EQ(rejected, 15);
  EXPECT_EQ(s.queued_total(), 5u);
}

}  // namespace
}  // namespace okta_sidecar::ratelimit
