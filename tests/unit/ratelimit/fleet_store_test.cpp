#include "okta_sidecar/ratelimit/fleet_store.hpp"

#include <gtest/gtest.h>

#include "fake_clock.hpp"

namespace okta_sidecar::ratelimit {
namespace {

using std::chrono::milliseconds;

const bucket_key users{"acme.okta.com", "users"};
const grant leased{true, false, 0, std::nullopt};

class FleetStoreTest : public ::testing::Test {
 protected:
  static fleet_settings settings(std::uint32_t replicas = 3) {
    fleet_settings s;
    s.lease_size = 5;
    s.expected_replicas = replicas;
    s.max_concurrency = 75;
    s.health = {milliseconds(50), 3};
    return s;
  }
  void join(fleet_store& st) {
    for (int i = 0; i < 3; ++i) st.on_redis_answer(milliseconds(1), clock.now());
    ASSERT_EQ(st.mode(), fleet_mode::shared);
  }
  // One lease request for `users`, answered with `granted` tokens of a window ending in 30 s.
  std::uint64_t lease(fleet_store& st, std::int64_t granted, std::int64_t left = 100,
                      std::int64_t retry_ms = 0) {
    EXPECT_FALSE(st.take(users, 0.0, clock.now()).granted);
    auto out = st.outgoing(clock.now());
    EXPECT_EQ(out.size(), 1u);
    if (out.empty()) return 0;
    EXPECT_EQ(out[0].want, 5u);
    lease_reply r;
    r.granted = granted;
    r.limit = 600;
    r.left = left;
    r.reset_epoch = 1000;
    r.reset_in_ms = 30000;
    r.retry_in_ms = retry_ms;
    st.on_lease(out[0].id, r, clock.now());
    return out[0].id;
  }
  observation obs(std::int64_t limit, std::int64_t remaining, std::int64_t reset_epoch, duration reset_in) {
    observation o;
    o.kind = limit_kind::window;
    o.limit = limit;
    o.remaining = remaining;
    o.reset_epoch = reset_epoch;
    o.reset_at = clock.now() + reset_in;
    return o;
  }
  testing::fake_clock clock;
};

TEST_F(FleetStoreTest, WithoutATokenTakeAsksTheLedgerAndComesBackSoon) {
  fleet_store st(settings());
  join(st);
  const auto g = st.take(users, 0.0, clock.now());
  EXPECT_FALSE(g.granted);
  ASSERT_TRUE(g.retry_at);
  EXPECT_EQ(*g.retry_at, clock.now() + milliseconds(2));
  EXPECT_TRUE(st.has_outgoing());
  const auto out = st.outgoing(clock.now());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].key, users);
  EXPECT_EQ(out[0].want, 5u);
  EXPECT_FALSE(out[0].obs);
  EXPECT_TRUE(st.outgoing(clock.now()).empty()) << "one request per bucket on its way";
  EXPECT_FALSE(st.take(users, 0.0, clock.now()).granted);
  EXPECT_TRUE(st.outgoing(clock.now()).empty());
}

TEST_F(FleetStoreTest, ALeaseServesThatManyTakesWithoutRoundTrips) {
  fleet_store st(settings());
  join(st);
  lease(st, 5, /*left=*/0);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(st.take(users, 0.0, clock.now()).granted) << i;
  EXPECT_EQ(st.counters().lease_hits, 5u);
  EXPECT_FALSE(st.has_outgoing()) << "window nearly spent: no prefetch";
  EXPECT_FALSE(st.take(users, 0.0, clock.now()).granted);
  EXPECT_EQ(st.outgoing(clock.now()).size(), 1u);
}

TEST_F(FleetStoreTest, PrefetchesOnlyWhileTheWindowHasPlentyLeft) {
  struct row {
    std::int64_t left;
    bool prefetch;
  };
  // plenty = lease_size (5) x (replicas seen (1) + 1) = 10
  for (const row r : {row{9, false}, row{10, true}}) {
    fleet_store st(settings());
    join(st);
    lease(st, 5, r.left);
    EXPECT_TRUE(st.take(users, 0.0, clock.now()).granted);
    EXPECT_TRUE(st.take(users, 0.0, clock.now()).granted);
    EXPECT_FALSE(st.has_outgoing()) << "3 tokens left is not low yet";
    EXPECT_TRUE(st.take(users, 0.0, clock.now()).granted);
    EXPECT_EQ(st.has_outgoing(), r.prefetch) << "left " << r.left;
  }
}

TEST_F(FleetStoreTest, UnusedTokensDieWithTheirWindow) {
  fleet_store st(settings());
  join(st);
  lease(st, 5);
  EXPECT_TRUE(st.take(users, 0.0, clock.now()).granted);
  clock.advance(milliseconds(29999));
  EXPECT_TRUE(st.take(users, 0.0, clock.now()).granted);
  clock.advance(milliseconds(1));
  EXPECT_FALSE(st.take(users, 0.0, clock.now()).granted);
  EXPECT_EQ(st.counters().tokens_expired, 3u);
}

TEST_F(FleetStoreTest, IdleTokensGoBackToTheLedgerBeforeTheirWindowEnds) {
  fleet_store st(settings());
  join(st);
  lease(st, 5);
  EXPECT_TRUE(st.take(users, 0.0, clock.now()).granted);
  EXPECT_TRUE(st.take(users, 0.0, clock.now()).granted);
  // Nothing more asked for here: the three left are due back after lease_idle_return.
  ASSERT_TRUE(st.next_deadline().has_value());
  EXPECT_EQ(*st.next_deadline(), clock.now() + milliseconds(30));
  clock.advance(milliseconds(29));
  EXPECT_TRUE(st.outgoing(clock.now()).empty());
  clock.advance(milliseconds(1));
  const auto out = st.outgoing(clock.now());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].want, 0u);
  EXPECT_EQ(out[0].give_back, 3);
  EXPECT_EQ(out[0].give_back_reset, 1000);
  EXPECT_EQ(st.counters().tokens_returned, 3u);
  st.on_lease(out[0].id, lease_reply{0, false, 600, 103, 1000, 29970, 0}, clock.now());
  // A new request here leases again, like any other sidecar.
  EXPECT_FALSE(st.take(users, 0.0, clock.now()).granted);
  EXPECT_EQ(st.outgoing(clock.now())[0].want, 5u);
}

TEST_F(FleetStoreTest, TokensInUseAreNotHandedBack) {
  fleet_store st(settings());
  join(st);
  lease(st, 5);
  for (int i = 0; i < 3; ++i) {
    clock.advance(milliseconds(20));
    EXPECT_TRUE(st.take(users, 0.0, clock.now()).granted);
    for (const auto& r : st.outgoing(clock.now())) EXPECT_EQ(r.give_back, 0);  // a prefetch at most
  }
  EXPECT_EQ(st.counters().tokens_returned, 0u);
}

TEST_F(FleetStoreTest, ConcurrencyLessonsGoOutWithTheHeartbeatAndComeBackFromTheFleet) {
  fleet_store st(settings());
  join(st);
  EXPECT_FALSE(st.fleet_concurrency("acme.okta.com").has_value());
  st.share_concurrency("acme.okta.com", concurrency_memory{14, 19});
  const auto hb = st.heartbeat();
  ASSERT_EQ(hb.inflight.size(), 1u);
  ASSERT_TRUE(hb.learned.at(0).has_value());
  EXPECT_EQ(hb.learned[0]->cap, 14u);
  st.heartbeat_sent(hb);
  EXPECT_FALSE(st.heartbeat().learned.at(0).has_value());  // sent once
  heartbeat_reply r;
  r.replicas = 2;
  r.concurrency["acme.okta.com"] = {concurrency_memory{12, 16}, 3};
  st.on_heartbeat(r, clock.now());
  const auto fleet = st.fleet_concurrency("acme.okta.com");
  ASSERT_TRUE(fleet.has_value());
  EXPECT_EQ(fleet->memory.cap, 12u);
  EXPECT_EQ(fleet->memory.refused, 16u);
  EXPECT_EQ(fleet->version, 3u);
}

TEST_F(FleetStoreTest, DenialWaitsWhatTheLedgerSaysBeforeAskingAgain) {
  fleet_store st(settings());
  join(st);
  lease(st, 0, 0, /*retry_ms=*/3000);
  EXPECT_EQ(st.counters().lease_denials, 1u);
  const auto g = st.take(users, 0.0, clock.now());
  EXPECT_FALSE(g.granted);
  ASSERT_TRUE(g.retry_at);
  EXPECT_EQ(*g.retry_at, clock.now() + milliseconds(3000));
  EXPECT_FALSE(st.has_outgoing());
  clock.advance(milliseconds(3000));
  EXPECT_FALSE(st.take(users, 0.0, clock.now()).granted);
  EXPECT_TRUE(st.has_outgoing());
}

TEST_F(FleetStoreTest, NewerWindowSeenHereVoidsOldTokensLiftsTheDenialAndIsReported) {
  fleet_store st(settings());
  join(st);
  lease(st, 0, 0, 30000);
  const auto o = obs(600, 599, 1060, std::chrono::seconds(60));
  st.settle(users, leased, settle_kind::answered, &o, clock.now());
  auto out = st.outgoing(clock.now());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].want, 0u) << "report only: nobody asked for tokens yet";
  ASSERT_TRUE(out[0].obs);
  EXPECT_EQ(out[0].obs->reset_epoch, 1060);
  EXPECT_EQ(out[0].obs->remaining, 599);
  EXPECT_EQ(out[0].obs->reset_in_ms, 60000);
  EXPECT_FALSE(out[0].obs->rejected);
  st.on_lease(out[0].id, lease_reply{0, false, 600, 599, 1060, 60000, 0}, clock.now());
  EXPECT_EQ(st.counters().lease_denials, 1u) << "a report's answer is no denial";
  EXPECT_FALSE(st.take(users, 0.0, clock.now()).granted);
  EXPECT_TRUE(st.has_outgoing()) << "the denial was for the old window";
}

TEST_F(FleetStoreTest, SameWindowAnswersAreReportedOnlyWhenTheyShowMoreUseThanLeased) {
  fleet_store st(settings());
  join(st);
  lease(st, 5, /*left=*/500);  // ledger: limit 600, 100 used
  struct row {
    std::int64_t remaining;
    bool reported;
  };
  for (const row r : {row{500, false}, row{520, false}, row{499, true}}) {
    const auto o = obs(600, r.remaining, 1000, std::chrono::seconds(30));
    st.settle(users, leased, settle_kind::answered, &o, clock.now());
    EXPECT_EQ(st.has_outgoing(), r.reported) << r.remaining;
  }
}

TEST_F(FleetStoreTest, A429IsAlwaysReportedAndReportsKeepTheMinimumRemaining) {
  fleet_store st(settings());
  join(st);
  lease(st, 5, 500);
  const auto a = obs(600, 0, 1000, std::chrono::seconds(30));
  st.settle(users, leased, settle_kind::not_processed, &a, clock.now());
  const auto b = obs(600, 3, 1000, std::chrono::seconds(30));
  st.settle(users, leased, settle_kind::answered, &b, clock.now());
  auto out = st.outgoing(clock.now());
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(out[0].obs);
  EXPECT_TRUE(out[0].obs->rejected);
  EXPECT_EQ(out[0].obs->remaining, 0);
}

TEST_F(FleetStoreTest, ALateLeaseFallsBackToALocalShareOfTheWindow) {
  fleet_store st(settings(3));
  // Local mode first: learn the bucket (limit 30) from one answer.
  auto g = st.take(users, 0.0, clock.now());
  ASSERT_TRUE(g.granted) << "local mode: the probe";
  const auto o = obs(30, 29, 1000, std::chrono::seconds(60));
  st.settle(users, g, settle_kind::answered, &o, clock.now());
  join(st);
  EXPECT_FALSE(st.take(users, 0.0, clock.now()).granted);
  ASSERT_EQ(st.outgoing(clock.now()).size(), 1u);
  clock.advance(milliseconds(51));
  // Redis is late: the same take is decided locally, within 1/3 of the 30-request window.
  int granted = 0;
  for (int i = 0; i < 20; ++i) granted += st.take(users, 0.0, clock.now()).granted ? 1 : 0;
  EXPECT_EQ(st.mode(), fleet_mode::local);
  EXPECT_EQ(st.health().last_reason(), fallback_reason::slow);
  EXPECT_EQ(granted, 10);
  EXPECT_EQ(st.counters().local_admissions, 11u) << "the first probe was local too";
  EXPECT_EQ(st.counters().share_denials, 10u);
  EXPECT_FALSE(st.has_outgoing());
}

TEST_F(FleetStoreTest, TokensTakenEarlierInTheWindowCountAgainstTheLocalShare) {
  fleet_store st(settings(3));
  const auto o = obs(30, 29, 1000, std::chrono::seconds(60));
  auto g = st.take(users, 0.0, clock.now());
  st.settle(users, g, settle_kind::answered, &o, clock.now());
  join(st);
  EXPECT_FALSE(st.take(users, 0.0, clock.now()).granted);
  auto out = st.outgoing(clock.now());
  ASSERT_EQ(out.size(), 1u);
  st.on_lease(out[0].id, lease_reply{5, false, 30, 20, 1000, 60000, 0}, clock.now());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(st.take(users, 0.0, clock.now()).granted);
  st.on_redis_failure(fallback_reason::down, clock.now());
  EXPECT_EQ(st.counters().tokens_expired, 1u) << "the unused leased token died";
  int granted = 0;
  for (int i = 0; i < 20; ++i) granted += st.take(users, 0.0, clock.now()).granted ? 1 : 0;
  EXPECT_EQ(granted, 6) << "share 10, 4 already taken under the lease";
}

TEST_F(FleetStoreTest, LateAnswerAfterTheFallbackIsIgnored) {
  fleet_store st(settings());
  join(st);
  EXPECT_FALSE(st.take(users, 0.0, clock.now()).granted);
  auto out = st.outgoing(clock.now());
  st.on_redis_failure(fallback_reason::down, clock.now());
  st.on_lease(out[0].id, lease_reply{5, false, 600, 100, 1000, 30000, 0}, clock.now());
  EXPECT_EQ(st.counters().lease_grants, 0u);
  EXPECT_TRUE(st.buckets(clock.now()).at(0).tokens == 0);
}

TEST_F(FleetStoreTest, ReportsWaitInLocalModeAndGoOutAfterTheRejoin) {
  fleet_store st(settings());
  const auto o = obs(600, 500, 1000, std::chrono::seconds(30));
  st.settle(users, leased, settle_kind::answered, &o, clock.now());
  EXPECT_FALSE(st.has_outgoing());
  EXPECT_TRUE(st.outgoing(clock.now()).empty());
  join(st);
  auto out = st.outgoing(clock.now());
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(out[0].obs);
  EXPECT_EQ(out[0].obs->remaining, 500);
}

TEST_F(FleetStoreTest, FleetInflightAllowanceLeavesTheOthersTheirReservedSlots) {
  fleet_store st(settings());
  join(st);
  st.on_heartbeat(heartbeat_reply{3, {{"acme.okta.com", 72}}, {}}, clock.now());
  EXPECT_EQ(st.inflight_allowance("acme.okta.com", clock.now()), 3u);
  EXPECT_EQ(st.inflight_allowance("other.okta.com", clock.now()), 75u);
  lease(st, 5);
  std::vector<grant> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(st.take(users, 0.0, clock.now()));
    ASSERT_TRUE(held.back().granted);
  }
  const auto g = st.take(users, 0.0, clock.now());
  EXPECT_FALSE(g.granted);
  ASSERT_TRUE(g.retry_at);
  EXPECT_EQ(*g.retry_at, clock.now() + milliseconds(10));
  EXPECT_EQ(st.counters().inflight_denials, 1u);
  st.settle(users, held[0], settle_kind::answered, nullptr, clock.now());
  EXPECT_TRUE(st.take(users, 0.0, clock.now()).granted);
  EXPECT_EQ(st.heartbeat().inflight.at(0).second, 3u);
}

TEST_F(FleetStoreTest, InflightAllowanceFallsToTheShareWhenHeartbeatsAreStaleOrRedisIsGone) {
  fleet_store st(settings(3));
  join(st);
  st.on_heartbeat(heartbeat_reply{2, {{"acme.okta.com", 0}}, {}}, clock.now());
  EXPECT_EQ(st.inflight_allowance("acme.okta.com", clock.now()), 75u);
  clock.advance(std::chrono::seconds(2));
  EXPECT_EQ(st.inflight_allowance("acme.okta.com", clock.now()), 75u);
  clock.advance(milliseconds(1));
  EXPECT_EQ(st.inflight_allowance("acme.okta.com", clock.now()), 25u);
  st.on_heartbeat(heartbeat_reply{2, {{"acme.okta.com", 80}}, {}}, clock.now());
  EXPECT_EQ(st.inflight_allowance("acme.okta.com", clock.now()), 1u) << "never below one";
  st.on_redis_failure(fallback_reason::down, clock.now());
  EXPECT_EQ(st.inflight_allowance("acme.okta.com", clock.now()), 25u);
}

TEST_F(FleetStoreTest, ShareDefaultsToOneOverExpectedReplicasUnlessSet) {
  struct row {
    std::uint32_t replicas;
    double share_setting;
    double share;
  };
  for (const row r :
       {row{1, 0.0, 1.0}, row{4, 0.0, 0.25}, row{4, 0.5, 0.5}, row{4, 1.5, 0.25}, row{0, 0.0, 1.0}}) {
    fleet_settings s;
    s.expected_replicas = r.replicas;
    s.fallback_share = r.share_setting;
    EXPECT_DOUBLE_EQ(s.share(), r.share) << r.replicas << " " << r.share_setting;
  }
}

TEST_F(FleetStoreTest, SharedViewShowsTheFleetBudgetForPredictions) {
  fleet_store st(settings());
  EXPECT_FALSE(st.view(users, clock.now()));
  join(st);
  lease(st, 5, 40);
  auto v = st.view(users, clock.now());
  ASSERT_TRUE(v);
  EXPECT_EQ(v->phase, bucket_phase::confirmed);
  EXPECT_EQ(v->limit, 600);
  EXPECT_EQ(v->available, 45);
  ASSERT_TRUE(v->reset_at);
  EXPECT_EQ(*v->reset_at, clock.now() + milliseconds(30000));
  clock.advance(milliseconds(30000));
  v = st.view(users, clock.now());
  EXPECT_EQ(v->phase, bucket_phase::opening);
}

TEST_F(FleetStoreTest, ProbeTokenOpensAnUnknownWindowAndExpiresSoon) {
  fleet_store st(settings());
  join(st);
  EXPECT_FALSE(st.take(users, 0.0, clock.now()).granted);
  auto out = st.outgoing(clock.now());
  st.on_lease(out[0].id, lease_reply{1, true, -1, 0, -1, -1, 0}, clock.now());
  clock.advance(milliseconds(1000));
  EXPECT_FALSE(st.take(users, 0.0, clock.now()).granted) << "probe token lived 1 s";
  EXPECT_EQ(st.counters().tokens_expired, 1u);
}

TEST_F(FleetStoreTest, RetryAfterHoldLearnedHereBlocksSharedTakes) {
  fleet_store st(settings());
  join(st);
  lease(st, 5);
  observation o;
  o.kind = limit_kind::none;
  o.retry_after = std::chrono::seconds(2);
  st.settle(users, leased, settle_kind::not_processed, &o, clock.now());
  const auto g = st.take(users, 0.0, clock.now());
  EXPECT_FALSE(g.granted);
  ASSERT_TRUE(g.retry_at);
  EXPECT_EQ(*g.retry_at, clock.now() + std::chrono::seconds(2));
}

TEST_F(FleetStoreTest, BatchLeavesTheInteractiveReserveUnleased) {
  fleet_store st(settings());
  join(st);
  lease(st, 5, /*left=*/58);  // 63 usable; reserve 10% of 600 = 60
  EXPECT_TRUE(st.take(users, 0.1, clock.now()).granted);
  EXPECT_TRUE(st.take(users, 0.1, clock.now()).granted);
  EXPECT_TRUE(st.take(users, 0.1, clock.now()).granted);
  EXPECT_FALSE(st.take(users, 0.1, clock.now()).granted);
  EXPECT_TRUE(st.take(users, 0.0, clock.now()).granted) << "interactive may use it";
}

}  // namespace
}  // namespace okta_sidecar::ratelimit

namespace okta_sidecar::ratelimit {
namespace {

// Issue 14: a bucket the scheduler evicts takes its lease and learned share with it, except
// while a lease request is on its way (its answer must find the entry).
TEST_F(FleetStoreTest, ForgetDropsTheLeaseUnlessARequestIsOnItsWay) {
  fleet_store st(settings());
  join(st);
  EXPECT_FALSE(st.take(users, 0.0, clock.now()).granted);
  const auto out = st.outgoing(clock.now());
  ASSERT_EQ(out.size(), 1u);
  st.forget(users);
  EXPECT_EQ(st.size(), 1u) << "the request on its way keeps the entry";
  lease_reply r;
  r.granted = 5;
  r.limit = 600;
  r.left = 100;
  r.reset_epoch = 1000;
  r.reset_in_ms = 30000;
  st.on_lease(out[0].id, r, clock.now());
  st.forget(users);
  EXPECT_EQ(st.size(), 0u);
  EXPECT_TRUE(st.buckets(clock.now()).empty());
}

}  // namespace
}  // namespace okta_sidecar::ratelimit
