#include "okta_sidecar/ratelimit/scheduler.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <queue>
#include <set>

#include "fake_clock.hpp"

namespace okta_sidecar::ratelimit {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::int64_t epoch0 = 1'700'000'000;
const bucket_key users{"acme.okta.com", "users"};
const bucket_key groups{"acme.okta.com", "groups"};

class SchedulerTest : public ::testing::Test {
 protected:
  time_point now() const { return clock_.now(); }
  admission_request req(std::uint64_t caller = 1, bool interactive = false, duration max_wait = seconds(60),
                        const bucket_key& key = users) const {
    return admission_request{key, caller, interactive, true, now() + max_wait};
  }
  // Okta headers for a window whose reset is `reset_in` from now.
  observation window(std::int64_t limit, std::int64_t remaining, duration reset_in) const {
    observation o;
    o.kind = limit_kind::window;
    o.limit = limit;
    o.remaining = remaining;
    o.reset_at = now() + reset_in;
    o.reset_epoch =
        epoch0 +
        std::chrono::ceil<seconds>(o.reset_at->time_since_epoch() - start_.time_since_epoch()).count();
    return o;
  }
  static observation concurrency() {
    observation o;
    o.kind = limit_kind::concurrency;
    o.limit = 0;
    o.remaining = 0;
    o.reset_epoch = epoch0 + 115;
    return o;
  }
  // Teaches the scheduler a bucket: one probe answered with these headers.
  void learn(scheduler& s, std::int64_t limit, std::int64_t remaining, duration reset_in,
             const bucket_key& key = users) {
    const verdict v = s.submit(req(99, false, seconds(60), key), now());
    ASSERT_EQ(v.kind, verdict_kind::admit);
    ASSERT_EQ(s.on_response(v.id, 200, window(limit, remaining, reset_in), false, now()).kind,
              response_kind::deliver);
    s.poll(now());
  }

  testing::fake_clock clock_;
  time_point start_ = clock_.now();
};

TEST_F(SchedulerTest, FirstRequestProbesTheBucketAndTheRestWaitForItsAnswer) {
  scheduler s({});
  const verdict a = s.submit(req(), now());
  const verdict b = s.submit(req(), now());
  const verdict c = s.submit(req(2), now());
  EXPECT_EQ(a.kind, verdict_kind::admit);
  EXPECT_EQ(b.kind, verdict_kind::queue);
  EXPECT_EQ(c.kind, verdict_kind::queue);
  auto w = s.poll(now());
  EXPECT_TRUE(w.admitted.empty());
  EXPECT_EQ(s.queued_total(), 2u);

  EXPECT_EQ(s.on_response(a.id, 200, window(600, 599, seconds(60)), false, now()).kind,
            response_kind::deliver);
  w = s.poll(now());
  EXPECT_EQ(w.admitted, (std::vector<ticket>{b.id, c.id}));
  EXPECT_EQ(s.queued_total(), 0u);
  EXPECT_EQ(s.last(users).limit, 600);
  EXPECT_EQ(s.last(users).remaining, 599);
}

TEST_F(SchedulerTest, QueueIsBoundedPerBucket) {
  scheduler_settings cfg;
  cfg.max_queue = 2;
  scheduler s(cfg);
  learn(s, 10, 0, seconds(30));
  EXPECT_EQ(s.submit(req(), now()).kind, verdict_kind::queue);
  EXPECT_EQ(s.submit(req(), now()).kind, verdict_kind::queue);
  const verdict full = s.submit(req(), now());
  EXPECT_EQ(full.kind, verdict_kind::reject);
  EXPECT_EQ(full.id, 0u);
  EXPECT_EQ(full.retry_after, seconds(30));
  // Another bucket has its own queue.
  EXPECT_EQ(s.submit(req(1, false, seconds(60), groups), now()).kind, verdict_kind::admit);
}

TEST_F(SchedulerTest, PredictedWaitBeyondTheDeadlineIsRejectedWithRetryAfter) {
  struct row {
    const char* name;
    std::int64_t limit, remaining;
    duration reset_in;
    int queued_before;
    duration max_wait;
    verdict_kind want;
    duration want_retry;
  };
  const row rows[] = {
      {"EmptyWindowResetSoonEnough", 10, 0, milliseconds(30'200), 0, seconds(31), verdict_kind::queue, {}},
      {"EmptyWindowResetTooLate", 10, 0, milliseconds(30'200), 0, seconds(30), verdict_kind::reject,
       seconds(31)},
      {"ExactlyAtTheDeadlineIsAccepted", 10, 0, seconds(30), 0, seconds(30), verdict_kind::queue, {}},
      {"SubSecondWaitRoundsUpToOne", 10, 0, milliseconds(200), 0, milliseconds(100), verdict_kind::reject,
       seconds(1)},
      // 10 queued + this one: the next window (in 20 s) takes 10, the one after takes this.
      {"SecondWindowNeeded", 10, 0, seconds(20), 10, seconds(60), verdict_kind::reject, seconds(80)},
      {"SecondWindowFits", 10, 0, seconds(20), 10, seconds(80), verdict_kind::queue, {}},
      {"NinthFitsTheNextWindow", 10, 0, seconds(20), 9, seconds(20), verdict_kind::queue, {}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.name);
    scheduler_settings cfg;
    cfg.max_concurrency = 1000;
    cfg.initial_concurrency = 1000;
    scheduler s(cfg);
    // A 60 s window seen from its start, then the state of the row later in that window.
    const time_point opened = now();
    learn(s, r.limit, r.limit - 1, seconds(60));
    clock_.advance(seconds(60) - r.reset_in);
    const verdict seen = s.submit(req(98, false, seconds(60)), now());
    ASSERT_EQ(seen.kind, verdict_kind::admit);
    s.on_response(seen.id, 200, window(r.limit, r.remaining, r.reset_in), false, now());
    s.poll(now());
    for (int i = 0; i < r.queued_before; ++i) {
      ASSERT_EQ(s.submit(req(7, false, seconds(3600)), now()).kind, verdict_kind::queue);
    }
    // Same caller: round-robin does not put it ahead of its own backlog.
    const verdict v = s.submit(req(7, false, r.max_wait), now());
    EXPECT_EQ(v.kind, r.want);
    if (r.want == verdict_kind::reject) {
      EXPECT_EQ(v.retry_after, r.want_retry);
    }
    clock_.advance(opened - now() + std::chrono::hours(1));  // next row: a fresh start
  }
}

TEST_F(SchedulerTest, AnAnswerThatOvertakesAnEarlierRequestDoesNotRefuseWhatStillFits) {
  scheduler_settings cfg;
  cfg.initial_concurrency = cfg.max_concurrency;
  scheduler s(cfg);
  learn(s, 10, 9, seconds(10));
  // Okta counts a (Remaining 8) then b (7), but b's answer arrives first: until a's does, a is
  // both in flight and in Remaining, so only 6 of the 7 left look free.
  const verdict a = s.submit(req(), now());
  const verdict b = s.submit(req(), now());
  ASSERT_EQ(s.on_response(b.id, 200, window(10, 7, seconds(10)), false, now()).kind, response_kind::deliver);
  for (int i = 0; i < 6; ++i) ASSERT_EQ(s.submit(req(2), now()).kind, verdict_kind::admit) << i;
  // The seventh fits once a's answer shows it was already counted: it waits, not a 429.
  const verdict seventh = s.submit(req(3, false, milliseconds(500)), now());
  ASSERT_EQ(seventh.kind, verdict_kind::queue);
  s.on_response(a.id, 200, window(10, 8, seconds(10)), false, now());
  EXPECT_EQ(s.poll(now()).admitted, (std::vector<ticket>{seventh.id}));
  // Spent: nothing in flight can free budget, so the next one is refused at once.
  const verdict eighth = s.submit(req(4, false, milliseconds(500)), now());
  EXPECT_EQ(eighth.kind, verdict_kind::reject);
  EXPECT_EQ(eighth.retry_after, seconds(10));
}

TEST_F(SchedulerTest, AnEmptyWindowIsRefusedAtOnceWhateverIsInFlight) {
  scheduler_settings cfg;
  cfg.initial_concurrency = cfg.max_concurrency;
  scheduler s(cfg);
  learn(s, 10, 2, seconds(10));
  const verdict a = s.submit(req(), now());
  ASSERT_EQ(a.kind, verdict_kind::admit);
  const verdict b = s.submit(req(), now());
  ASSERT_EQ(b.kind, verdict_kind::admit);
  // b's answer says the window is empty; a is still out, but Remaining only ever falls.
  s.on_response(b.id, 200, window(10, 0, seconds(10)), false, now());
  const verdict late = s.submit(req(3, false, milliseconds(500)), now());
  EXPECT_EQ(late.kind, verdict_kind::reject);
  EXPECT_EQ(late.retry_after, seconds(10));
}

TEST_F(SchedulerTest, ShortWindowsAreLearnedSoA3xLimitBatchIsPredictedToFit) {
  // Test doubles and per-user buckets run windows of seconds, not Okta's usual minute: a batch
  // of three windows' worth must be predicted at ~3 short windows, not 2 x 60 s (which would
  // reject it against a 10 s max wait).
  scheduler_settings cfg;
  cfg.initial_concurrency = cfg.max_concurrency;  // the budget, not the in-flight cap, queues
  scheduler s(cfg);
  learn(s, 30, 29, milliseconds(2400));
  int queued = 0;
  for (int i = 0; i < 89; ++i) {
    const verdict v = s.submit(req(static_cast<std::uint64_t>(i % 20), false, seconds(10)), now());
    ASSERT_NE(v.kind, verdict_kind::reject) << i;
    queued += v.kind == verdict_kind::queue ? 1 : 0;
  }
  EXPECT_EQ(queued, 60);
  // One more than three windows hold: predicted past a 5 s wait, but within 10 s.
  const verdict late = s.submit(req(1, false, seconds(5)), now());
  ASSERT_EQ(late.kind, verdict_kind::reject);
  EXPECT_EQ(late.retry_after, seconds(8));  // 2.4 + 2 x 2.4 = 7.2 s, in whole seconds
}

TEST_F(SchedulerTest, QueuedRequestsWhoseDeadlinePassesAreRejected) {
  scheduler s({});
  const verdict probe = s.submit(req(), now());
  const verdict q = s.submit(req(1, false, seconds(5)), now());
  ASSERT_EQ(q.kind, verdict_kind::queue);
  auto w = s.poll(now());
  ASSERT_TRUE(w.next_wake.has_value());
  EXPECT_EQ(*w.next_wake, now() + seconds(5));
  clock_.advance(seconds(5) - milliseconds(1));
  EXPECT_TRUE(s.poll(now()).rejected.empty());
  clock_.advance(milliseconds(1));
  w = s.poll(now());
  ASSERT_EQ(w.rejected.size(), 1u);
  EXPECT_EQ(w.rejected[0].first, q.id);
  EXPECT_EQ(w.rejected[0].second, seconds(1));
  EXPECT_EQ(s.queued_total(), 0u);
  // The probe's answer finds nobody waiting; the expired ticket is gone for good.
  s.on_response(probe.id, 200, window(10, 9, seconds(55)), false, now());
  EXPECT_TRUE(s.poll(now()).admitted.empty());
  s.cancel(q.id, now());  // a no-op on a finished ticket
  EXPECT_EQ(s.queued_total(), 0u);
}

TEST_F(SchedulerTest, WindowRollOverWakesAtTheResetWithOneProbe) {
  scheduler s({});
  learn(s, 100, 0, seconds(10));
  std::vector<ticket> q;
  for (int i = 0; i < 5; ++i) q.push_back(s.submit(req(), now()).id);
  auto w = s.poll(now());
  EXPECT_TRUE(w.admitted.empty());
  ASSERT_TRUE(w.next_wake.has_value());
  EXPECT_EQ(*w.next_wake, now() + seconds(10));

  clock_.advance(seconds(10));
  w = s.poll(now());
  ASSERT_EQ(w.admitted, std::vector<ticket>{q[0]});
  // The new window's first answer says a neighbour left 2.
  s.on_response(q[0], 200, window(100, 2, seconds(60)), false, now());
  w = s.poll(now());
  EXPECT_EQ(w.admitted, (std::vector<ticket>{q[1], q[2]}));
  EXPECT_EQ(s.queued_total(), 2u);
  ASSERT_TRUE(w.next_wake.has_value());
  EXPECT_EQ(*w.next_wake, now() + seconds(50));  // their deadlines come before the reset
}

TEST_F(SchedulerTest, NeighbourConsumptionMidWindowStopsAdmissionsEarly) {
  scheduler s({});
  learn(s, 100, 90, seconds(30));
  std::vector<ticket> in;
  for (int i = 0; i < 10; ++i) {
    const verdict v = s.submit(req(), now());
    ASSERT_EQ(v.kind, verdict_kind::admit);
    in.push_back(v.id);
  }
  // Answer of one of ours: another tool took 75 meanwhile (90 - 10 ours - 75 = 5 left,
  // 9 of ours still unanswered and possibly not in that figure yet).
  s.on_response(in[0], 200, window(100, 5, seconds(30)), false, now());
  EXPECT_EQ(s.submit(req(), now()).kind, verdict_kind::queue);
  EXPECT_TRUE(s.poll(now()).admitted.empty());
}

TEST_F(SchedulerTest, RoundRobinKeepsABatchCallerFromStarvingAnother) {
  scheduler_settings cfg;
  cfg.max_concurrency = 1;
  cfg.initial_concurrency = 1;
  scheduler s(cfg);
  learn(s, 1000, 1000, seconds(60));
  const verdict first = s.submit(req(1), now());
  ASSERT_EQ(first.kind, verdict_kind::admit);
  std::map<ticket, char> who;
  for (int i = 0; i < 10; ++i) who[s.submit(req(1, false, seconds(600)), now()).id] = 'A';
  for (int i = 0; i < 2; ++i) who[s.submit(req(2, false, seconds(600)), now()).id] = 'B';
  std::string order;
  ticket current = first.id;
  while (true) {
    s.on_response(current, 200, window(1000, 900, seconds(60)), false, now());
    auto w = s.poll(now());
    if (w.admitted.empty()) break;
    ASSERT_EQ(w.admitted.size(), 1u);
    current = w.admitted[0];
    order += who[current];
  }
  EXPECT_EQ(order, "ABABAAAAAAAA");
}

TEST_F(SchedulerTest, InteractiveRequestsAreServedFirst) {
  scheduler_settings cfg;
  cfg.max_concurrency = 1;
  cfg.initial_concurrency = 1;
  scheduler s(cfg);
  learn(s, 1000, 1000, seconds(60));
  const verdict first = s.submit(req(1), now());
  for (int i = 0; i < 5; ++i) s.submit(req(1, false, seconds(600)), now());
  const verdict login = s.submit(req(3, true), now());
  ASSERT_EQ(login.kind, verdict_kind::queue);
  s.on_response(first.id, 200, window(1000, 900, seconds(60)), false, now());
  EXPECT_EQ(s.poll(now()).admitted, std::vector<ticket>{login.id});
}

TEST_F(SchedulerTest, ReserveIsLeftForInteractiveRequests) {
  scheduler_settings cfg;
  cfg.reserve_fraction = 0.2;
  scheduler s(cfg);
  learn(s, 10, 10, seconds(60));
  int admitted = 0;
  verdict v{};
  while ((v = s.submit(req(1, false, seconds(120)), now())).kind == verdict_kind::admit) ++admitted;
  EXPECT_EQ(admitted, 8);
  EXPECT_EQ(v.kind, verdict_kind::queue);
  EXPECT_EQ(s.submit(req(2, true), now()).kind, verdict_kind::admit);
  EXPECT_EQ(s.submit(req(2, true), now()).kind, verdict_kind::admit);
  const verdict late = s.submit(req(2, true, seconds(30)), now());
  EXPECT_EQ(late.kind, verdict_kind::reject);
  EXPECT_EQ(late.retry_after, seconds(60));
}

TEST_F(SchedulerTest, HostCapBoundsInflightAcrossBuckets) {
  scheduler_settings cfg;
  cfg.max_concurrency = 3;
  cfg.initial_concurrency = 3;
  scheduler s(cfg);
  learn(s, 100, 100, seconds(60), users);
  learn(s, 100, 100, seconds(60), groups);
  std::vector<ticket> in;
  for (int i = 0; i < 2; ++i) in.push_back(s.submit(req(1, false, seconds(60), users), now()).id);
  in.push_back(s.submit(req(1, false, seconds(60), groups), now()).id);
  const verdict waiting = s.submit(req(1, false, seconds(60), groups), now());
  EXPECT_EQ(waiting.kind, verdict_kind::queue);
  ASSERT_EQ(s.hosts().size(), 1u);
  EXPECT_EQ(s.hosts()[0].inflight, 3u);
  EXPECT_EQ(s.hosts()[0].cap, 3u);
  EXPECT_EQ(s.hosts()[0].queued, 1u);
  EXPECT_TRUE(s.poll(now()).admitted.empty());
  s.on_failure(in[0], now());  // any finished request frees the slot
  EXPECT_EQ(s.poll(now()).admitted, std::vector<ticket>{waiting.id});
}

TEST_F(SchedulerTest, Concurrency429LowersTheCapRetriesOnCompletionAndRecovers) {
  scheduler_settings cfg;
  cfg.max_concurrency = 8;
  cfg.initial_concurrency = 4;
  cfg.concurrency_reprobe = seconds(60);
  scheduler s(cfg);
  learn(s, 1000, 1000, seconds(60));
  std::vector<ticket> in;
  for (int i = 0; i < 4; ++i) in.push_back(s.submit(req(), now()).id);
  EXPECT_EQ(s.submit(req(), now()).kind, verdict_kind::queue);  // the seed caps it at 4
  const auto d = s.on_response(in[3], 429, concurrency(), false, now());
  EXPECT_EQ(d.kind, response_kind::requeued);
  EXPECT_EQ(s.hosts()[0].cap, 3u);  // floor(4 x 0.75), and below the refused 4
  EXPECT_EQ(s.hosts()[0].cap_source, concurrency_source::backed_off);
  EXPECT_EQ(s.hosts()[0].refused, 4u);
  EXPECT_EQ(s.queued_total(), 2u);
  EXPECT_TRUE(s.poll(now()).admitted.empty());  // 3 in flight = cap: wait for one to finish
  // Not at the ~2-minute hinted reset: right when one completes.
  s.on_response(in[0], 200, window(1000, 990, seconds(60)), false, now());
  EXPECT_EQ(s.poll(now()).admitted, std::vector<ticket>{in[3]});
  // Additive increase: +1 after a cap's worth (3) of completions in full use, up to just
  // below the refused level; the one above was the first.
  std::deque<ticket> flying{in[1], in[2], in[3]};
  auto cycle = [&] {
    s.on_response(flying.front(), 200, window(1000, 900, seconds(60)), false, now());
    flying.pop_front();
    for (const ticket t : s.poll(now()).admitted) flying.push_back(t);
    while (flying.size() < s.hosts()[0].cap) {
      const verdict v = s.submit(req(), now());
      if (v.kind != verdict_kind::admit) break;
      flying.push_back(v.id);
    }
  };
  for (int i = 0; i < 20; ++i) cycle();
  EXPECT_EQ(s.hosts()[0].cap, 3u);  // 4 was refused: not retried before the reprobe interval
  clock_.advance(seconds(61));
  for (int i = 0; i < 3; ++i) cycle();
  EXPECT_EQ(s.hosts()[0].cap, 4u);
  EXPECT_EQ(s.hosts()[0].cap_source, concurrency_source::reprobed);
}

TEST_F(SchedulerTest, RepeatedConcurrency429sFloorTheCapAtOne) {
  scheduler_settings cfg;
  cfg.max_concurrency = 3;
  cfg.initial_concurrency = 3;
  scheduler s(cfg);
  learn(s, 1000, 1000, seconds(60));
  std::vector<ticket> in;
  for (int i = 0; i < 3; ++i) in.push_back(s.submit(req(), now()).id);
  for (const ticket t : in) s.on_response(t, 429, concurrency(), false, now());
  EXPECT_EQ(s.hosts()[0].cap, 1u);
  EXPECT_EQ(s.poll(now()).admitted.size(), 1u);
}

TEST_F(SchedulerTest, Bucket429IsRequeuedAtTheFrontOrGivenUpPastTheDeadline) {
  scheduler s({});
  learn(s, 10, 5, seconds(20));
  const verdict a = s.submit(req(1, false, seconds(60)), now());
  const verdict b = s.submit(req(1, false, seconds(10)), now());
  ASSERT_EQ(b.kind, verdict_kind::admit);
  const verdict later = s.submit(req(2, false, seconds(120)), now());
  ASSERT_EQ(later.kind, verdict_kind::admit);
  // Okta refused `a` (a neighbour drained the bucket): it waits for the reset, ahead of others.
  EXPECT_EQ(s.on_response(a.id, 429, window(10, 0, seconds(20)), false, now()).kind, response_kind::requeued);
  const verdict c = s.submit(req(3, false, seconds(120)), now());
  EXPECT_EQ(c.kind, verdict_kind::queue);
  // `b` cannot be retried before the reset in 20 s: the client gets Retry-After instead.
  const auto give_up = s.on_response(b.id, 429, window(10, 0, seconds(20)), false, now());
  EXPECT_EQ(give_up.kind, response_kind::give_up);
  EXPECT_EQ(give_up.retry_after, seconds(20));
  clock_.advance(seconds(20));
  EXPECT_EQ(s.poll(now()).admitted, std::vector<ticket>{a.id});  // the new window's probe
}

TEST_F(SchedulerTest, PerPrincipal429IsDeliveredNotRetried) {
  scheduler s({});
  learn(s, 600, 500, seconds(60));
  const verdict v = s.submit(req(1, true), now());
  const auto d = s.on_response(v.id, 429, window(4, 0, seconds(1)), true, now());
  EXPECT_EQ(d.kind, response_kind::deliver);
  EXPECT_EQ(s.queued_total(), 0u);
  EXPECT_EQ(s.last(users).remaining, 500);  // one user's limit is not the org bucket
  EXPECT_EQ(s.hosts()[0].inflight, 0u);
}

TEST_F(SchedulerTest, CancelWhileQueuedCostsNothingUpstream) {
  scheduler_settings cfg;
  cfg.max_concurrency = 1;
  cfg.initial_concurrency = 1;
  scheduler s(cfg);
  learn(s, 100, 100, seconds(60));
  const verdict first = s.submit(req(), now());
  const verdict gone = s.submit(req(), now());
  const verdict stays = s.submit(req(2), now());
  s.cancel(gone.id, now());
  EXPECT_EQ(s.queued_total(), 1u);
  s.on_response(first.id, 200, window(100, 99, seconds(60)), false, now());
  EXPECT_EQ(s.poll(now()).admitted, std::vector<ticket>{stays.id});
  EXPECT_EQ(s.buckets(now())[0].inflight, 1u);
}

TEST_F(SchedulerTest, CancelInFlightReleasesTheSlotButKeepsTheCost) {
  scheduler s({});
  learn(s, 100, 2, seconds(60));
  const verdict a = s.submit(req(), now());
  const verdict b = s.submit(req(), now());
  const verdict c = s.submit(req(), now());
  ASSERT_EQ(c.kind, verdict_kind::queue);
  s.cancel(a.id, now());
  EXPECT_EQ(s.hosts()[0].inflight, 1u);
  // `a` may have reached Okta: it still counts against the window, so `c` keeps waiting.
  EXPECT_TRUE(s.poll(now()).admitted.empty());
  s.cancel(b.id, now());
  EXPECT_EQ(s.hosts()[0].inflight, 0u);
  EXPECT_TRUE(s.poll(now()).admitted.empty());
  // A stale ticket id does nothing.
  EXPECT_EQ(s.on_response(a.id, 200, window(100, 0, seconds(60)), false, now()).kind, response_kind::deliver);
  EXPECT_EQ(s.last(users).remaining, 2);
}

TEST_F(SchedulerTest, RequestsOutsideRateLimitsSkipTheBucketButUseSlots) {
  scheduler_settings cfg;
  cfg.max_concurrency = 2;
  cfg.initial_concurrency = 2;
  scheduler s(cfg);
  const bucket_key keys{"acme.okta.com", "keys"};
  admission_request r{keys, 1, false, false, now() + seconds(60)};
  const verdict a = s.submit(r, now());
  const verdict b = s.submit(r, now());  // no probe gating
  const verdict c = s.submit(r, now());
  EXPECT_EQ(a.kind, verdict_kind::admit);
  EXPECT_EQ(b.kind, verdict_kind::admit);
  EXPECT_EQ(c.kind, verdict_kind::queue);  // but the host cap applies
  s.on_response(a.id, 200, observation{}, false, now());
  EXPECT_EQ(s.poll(now()).admitted, std::vector<ticket>{c.id});
  // No window to wait for: a 429 here is passed through, not retried in a loop.
  EXPECT_EQ(s.on_response(b.id, 429, window(10, 0, seconds(30)), false, now()).kind, response_kind::deliver);
  EXPECT_EQ(s.queued_total(), 0u);
}

TEST_F(SchedulerTest, DrainAllReturnsEveryQueuedTicket) {
  scheduler s({});
  learn(s, 10, 0, seconds(30));
  learn(s, 10, 0, seconds(30), groups);
  std::set<ticket> queued;
  for (int i = 0; i < 3; ++i) queued.insert(s.submit(req(i), now()).id);
  queued.insert(s.submit(req(1, true, seconds(60), groups), now()).id);
  const auto drained = s.drain_all();
  EXPECT_EQ(std::set<ticket>(drained.begin(), drained.end()), queued);
  EXPECT_EQ(s.queued_total(), 0u);
  clock_.advance(seconds(30));
  const auto w = s.poll(now());
  EXPECT_TRUE(w.admitted.empty());
  EXPECT_TRUE(w.rejected.empty());
  EXPECT_FALSE(w.next_wake.has_value());
  // Still usable afterwards.
  EXPECT_EQ(s.submit(req(), now()).kind, verdict_kind::admit);
}

TEST_F(SchedulerTest, UpdateSettingsAppliesNewCapAndQueueBound) {
  scheduler_settings cfg;
  cfg.max_concurrency = 1;
  cfg.initial_concurrency = 1;
  scheduler s(cfg);
  learn(s, 100, 100, seconds(60));
  s.submit(req(), now());
  const verdict b = s.submit(req(), now());
  const verdict c = s.submit(req(), now());
  cfg.max_concurrency = 3;
  cfg.initial_concurrency = 3;
  cfg.max_queue = 0;
  s.update_settings(cfg);
  EXPECT_EQ(s.poll(now()).admitted, (std::vector<ticket>{b.id, c.id}));
  EXPECT_EQ(s.hosts()[0].cap, 3u);
  EXPECT_EQ(s.submit(req(), now()).kind, verdict_kind::reject);  // cap full, queue bound 0
}

TEST_F(SchedulerTest, StatusReportsBucketsAndHosts) {
  scheduler s({});
  learn(s, 600, 0, milliseconds(12'500));
  s.submit(req(), now());
  const auto b = s.buckets(now());
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].key, users);
  EXPECT_EQ(b[0].limit, 600);
  EXPECT_EQ(b[0].remaining, 0);
  EXPECT_EQ(b[0].reset_in, milliseconds(12'500));
  EXPECT_EQ(b[0].queued, 1u);
  EXPECT_EQ(b[0].inflight, 0u);
  EXPECT_FALSE(s.last({"acme.okta.com", "never-seen"}).limit.has_value());
}

// ---- a tiny deterministic Okta ----------------------------------------------------------
// Fixed windows opened by the first request after the previous one ended, org-wide
// Remaining, 429 past the limit; answers after a pseudo-random latency (so they reorder);
// reset_at as the header parser promises it: at most `lateness` after the true window end.
struct okta_model {
  std::int64_t limit = 600;
  duration window = seconds(60);
  duration lateness = milliseconds(500);
  std::optional<time_point> end;
  std::int64_t used = 0;
  int windows = 0;
  std::vector<time_point> window_starts;
  int served = 0, refused = 0;

  observation headers(std::int64_t remaining) const {
    observation o;
    o.kind = limit_kind::window;
    o.limit = limit;
    o.remaining = remaining;
    o.reset_epoch = epoch0 + std::chrono::ceil<seconds>(end->time_since_epoch()).count();
    o.reset_at = *end + lateness;
    return o;
  }
  void roll(time_point at) {
    if (end && at < *end) return;
    end = at + window;
    used = 0;
    ++windows;
    window_starts.push_back(at);
  }
  // Returns the status; fills the answer's headers.
  int handle(time_point at, observation& out) {
    roll(at);
    if (used >= limit) {
      ++refused;
      out = headers(0);
      return 429;
    }
    ++used;
    ++served;
    out = headers(limit - used);
    return 200;
  }
  void neighbour(time_point at, std::int64_t n) {
    roll(at);
    used = std::min(limit, used + n);
  }
};

struct sim_result {
  int delivered = 0, gave_up = 0, rejected = 0, requeued = 0, steps = 0;
  time_point last_delivery{};
};

// Drives scheduler + model until every ticket is answered. `events` run at their time.
sim_result simulate(scheduler& s, okta_model& okta, testing::fake_clock& clock,
                    const std::vector<ticket>& admitted_at_submit, int total,
                    std::multimap<time_point, std::function<void()>> events = {}) {
  struct flight {
    time_point at;
    int kind;  // 0 = reaches Okta, 1 = answer reaches us
    ticket id;
    int status;
    observation obs;
    bool operator>(const flight& o) const { return at > o.at; }
  };
  std::priority_queue<flight, std::vector<flight>, std::greater<>> net;
  std::uint32_t lcg = 12345;
  auto latency = [&] {
    lcg = lcg * 1103515245u + 12345u;
    return milliseconds(20 + (lcg >> 16) % 60);
  };
  auto send = [&](ticket id) { net.push({clock.now() + latency(), 0, id, 0, {}}); };
  for (const ticket t : admitted_at_submit) send(t);
  sim_result r;
  int done = 0;
  int steps = 0;
  const time_point give_up_at = clock.now() + std::chrono::hours(2);
  // Bounded so a scheduler that stops making progress fails the test instead of hanging it.
  while (done < total && ++steps < 1'000'000 && clock.now() < give_up_at) {
    const auto w = s.poll(clock.now());
    for (const ticket t : w.admitted) send(t);
    r.rejected += static_cast<int>(w.rejected.size());
    done += static_cast<int>(w.rejected.size());
    if (done >= total) break;
    std::optional<time_point> next = w.next_wake;
    if (!net.empty() && (!next || net.top().at < *next)) next = net.top().at;
    if (!events.empty() && (!next || events.begin()->first < *next)) next = events.begin()->first;
    if (!next) break;
    if (*next > clock.now()) clock.advance(*next - clock.now());
    while (!events.empty() && events.begin()->first <= clock.now()) {
      events.begin()->second();
      events.erase(events.begin());
    }
    while (!net.empty() && net.top().at <= clock.now()) {
      flight f = net.top();
      net.pop();
      if (f.kind == 0) {
        f.status = okta.handle(f.at, f.obs);
        f.kind = 1;
        f.at = f.at + latency();
        net.push(f);
        continue;
      }
      const auto d = s.on_response(f.id, f.status, f.obs, false, clock.now());
      switch (d.kind) {
        case response_kind::deliver:
          ++r.delivered;
          ++done;
          r.last_delivery = clock.now();
          break;
        case response_kind::requeued:
          ++r.requeued;
          break;
        case response_kind::give_up:
          ++r.gave_up;
          ++done;
          break;
      }
    }
  }
  r.steps = steps;
  return r;
}

TEST_F(SchedulerTest, PacingOverSeveralWindowsUsesTheWholeBudgetWithoutA429) {
  constexpr int windows = 6;
  okta_model okta;
  scheduler s({});
  const int total = static_cast<int>(okta.limit) * windows;
  std::vector<ticket> admitted;
  for (int i = 0; i < total; ++i) {
    const verdict v = s.submit(req(static_cast<std::uint64_t>(i % 20), false, seconds(3600)), now());
    ASSERT_NE(v.kind, verdict_kind::reject);
    if (v.kind == verdict_kind::admit) admitted.push_back(v.id);
  }
  EXPECT_EQ(admitted.size(), 1u);  // the probe
  const auto r = simulate(s, okta, clock_, admitted, total);
  EXPECT_EQ(r.delivered, total);
  EXPECT_EQ(okta.refused, 0);  // zero over-admission
  EXPECT_EQ(r.requeued, 0);
  EXPECT_EQ(okta.windows, windows);  // ceil(N / limit): no window wasted
  // Long-run rate: full windows per window cycle (window + the gap before the next opens).
  const auto cycles = okta.window_starts.back() - okta.window_starts.front();
  const double rate =
      static_cast<double>(okta.limit * (windows - 1)) / std::chrono::duration<double>(cycles).count();
  const double limit_rate = static_cast<double>(okta.limit) / 60.0;
  RecordProperty("utilisation_permille", static_cast<int>(1000 * rate / limit_rate));
  EXPECT_GE(rate / limit_rate, 0.98) << "utilisation";
  EXPECT_LE(rate / limit_rate, 1.0);
}

TEST_F(SchedulerTest, NeighbourTakingHalfTheBudgetMidWindowCausesNoClientVisible429) {
  okta_model okta;
  scheduler_settings cfg;
  cfg.max_concurrency = 2;
  cfg.initial_concurrency = 2;  // ~2 requests per 100 ms: a window takes ~30 s to use
  scheduler s(cfg);
  const int total = 1500;
  std::vector<ticket> admitted;
  for (int i = 0; i < total; ++i) {
    const verdict v = s.submit(req(1, false, seconds(3600)), now());
    if (v.kind == verdict_kind::admit) admitted.push_back(v.id);
  }
  std::multimap<time_point, std::function<void()>> events;
  for (int w = 0; w < 3; ++w) {
    events.emplace(now() + seconds(10 + 61 * w), [&okta, this] { okta.neighbour(now(), 300); });
  }
  const auto r = simulate(s, okta, clock_, admitted, total, std::move(events));
  EXPECT_EQ(r.delivered, total);
  EXPECT_EQ(r.gave_up, 0);
  EXPECT_EQ(r.rejected, 0);
  EXPECT_LE(okta.refused, 2);  // at most what was in flight when the neighbour struck
}

TEST_F(SchedulerTest, ConcurrencyLimitedOktaConvergesWithoutClientVisible429s) {
  // Okta lets 5 requests of the org be in flight; we start with a cap of 20 and 200 clients.
  constexpr int okta_limit = 5;
  scheduler_settings cfg;
  cfg.max_concurrency = 20;
  cfg.initial_concurrency = 20;
  scheduler s(cfg);
  learn(s, 100000, 100000, seconds(3600));
  int at_okta = 0, refused = 0, delivered = 0;
  std::multimap<time_point, std::pair<ticket, bool>> answers;  // ticket, refused
  auto send = [&](ticket t) {
    if (at_okta >= okta_limit) {
      ++refused;
      answers.emplace(now() + milliseconds(10), std::pair{t, true});
    } else {
      ++at_okta;
      answers.emplace(now() + milliseconds(100), std::pair{t, false});
    }
  };
  for (int i = 0; i < 200; ++i) {
    const verdict v = s.submit(req(static_cast<std::uint64_t>(i)), now());
    ASSERT_NE(v.kind, verdict_kind::reject);
    if (v.kind == verdict_kind::admit) send(v.id);
  }
  while (!answers.empty()) {
    const auto it = answers.begin();
    clock_.advance(it->first - now());
    const auto [t, was_refused] = it->second;
    answers.erase(it);
    if (was_refused) {
      ASSERT_EQ(s.on_response(t, 429, concurrency(), false, now()).kind, response_kind::requeued);
    } else {
      --at_okta;
      ASSERT_EQ(s.on_response(t, 200, window(100000, 90000, seconds(3600)), false, now()).kind,
                response_kind::deliver);
      ++delivered;
    }
    for (const ticket a : s.poll(now()).admitted) send(a);
  }
  EXPECT_EQ(delivered, 200);
  EXPECT_EQ(s.queued_total(), 0u);
  EXPECT_LE(s.hosts()[0].cap, static_cast<std::uint32_t>(okta_limit + 1));
  // 15 to find the limit, then one per cap increase (every 8 x 5 successes).
  EXPECT_LE(refused, 15 + 200 / (8 * okta_limit) + 1);
}

TEST_F(SchedulerTest, ShortWindowBatchCompletesInCeilNOverLimitWindowsWithoutA429) {
  okta_model okta;
  okta.limit = 30;
  okta.window = seconds(2);
  scheduler s({});
  const int total = 90;
  std::vector<ticket> admitted;
  for (int i = 0; i < total; ++i) {
    const verdict v = s.submit(req(static_cast<std::uint64_t>(i % 20), false, seconds(10)), now());
    ASSERT_NE(v.kind, verdict_kind::reject);
    if (v.kind == verdict_kind::admit) admitted.push_back(v.id);
  }
  const auto r = simulate(s, okta, clock_, admitted, total);
  EXPECT_EQ(r.delivered, total);
  EXPECT_EQ(r.rejected + r.gave_up, 0);
  EXPECT_EQ(okta.refused, 0);
  EXPECT_EQ(okta.windows, 3);
}

TEST_F(SchedulerTest, CapacityPercentLeavesTheRestOfEachWindowToOthers) {
  scheduler_settings cfg;
  cfg.initial_concurrency = cfg.max_concurrency = 1000;
  cfg.capacity_percent = 60;
  scheduler s(cfg);
  learn(s, 100, 99, seconds(60));
  int admitted = 1;  // learn()'s probe
  for (int i = 0; i < 100; ++i) admitted += s.submit(req(), now()).kind == verdict_kind::admit ? 1 : 0;
  EXPECT_EQ(admitted, 60);  // 40 of the 100 are left for other integrations
  ASSERT_EQ(s.buckets(now()).size(), 1u);
  EXPECT_EQ(s.buckets(now())[0].capacity_percent, 60u);
}

TEST_F(SchedulerTest, BucketsFileCapacityPercentOverridesTheSetting) {
  scheduler_settings cfg;
  cfg.initial_concurrency = cfg.max_concurrency = 1000;
  scheduler s(cfg);
  learn(s, 100, 99, seconds(60));
  int admitted = 1;
  for (int i = 0; i < 100; ++i) {
    auto r = req();
    r.capacity_percent = 25;
    admitted += s.submit(r, now()).kind == verdict_kind::admit ? 1 : 0;
  }
  EXPECT_EQ(admitted, 25);
  // The queued rest waits for the next window, predicted at 25 per window.
  auto late = req(2, false, seconds(30));
  late.capacity_percent = 25;
  EXPECT_EQ(s.submit(late, now()).kind, verdict_kind::reject);
}

// A store that shares concurrency lessons like the fleet store does.
class sharing_store final : public bucket_store {
 public:
  grant take(const bucket_key&, double, time_point) override { return grant{true, false, 0, std::nullopt}; }
  void settle(const bucket_key&, const grant&, settle_kind, const observation*, time_point) override {}
  std::optional<bucket_view> view(const bucket_key&, time_point) const override { return std::nullopt; }
  void forget(const bucket_key&) override {}
  void share_concurrency(const std::string& host, const concurrency_memory& m) override {
    shared.emplace_back(host, m);
  }
  std::optional<shared_concurrency> fleet_concurrency(const std::string&) const override { return fleet; }
  std::vector<std::pair<std::string, concurrency_memory>> shared;
  std::optional<shared_concurrency> fleet;
};

TEST_F(SchedulerTest, ConcurrencyBackOffsAreSharedWithTheFleetAndAdoptedOnce) {
  auto store = std::make_unique<sharing_store>();
  auto* st = store.get();
  scheduler_settings cfg;
  cfg.initial_concurrency = 10;
  scheduler s(cfg, std::move(store));
  std::vector<ticket> in;
  for (int i = 0; i < 10; ++i) in.push_back(s.submit(req(), now()).id);
  s.on_response(in[9], 429, concurrency(), false, now());
  ASSERT_EQ(st->shared.size(), 1u);
  EXPECT_EQ(st->shared[0].first, "acme.okta.com");
  EXPECT_EQ(st->shared[0].second.cap, 7u);
  EXPECT_EQ(st->shared[0].second.refused, 10u);
  // A 429 of the same overshoot at a lower level does not back off again, but the fleet learns
  // the lower level (otherwise another sidecar grows back to the one that was refused).
  s.on_response(in[8], 429, concurrency(), false, now());
  ASSERT_EQ(st->shared.size(), 2u);
  EXPECT_EQ(st->shared[1].second.cap, 7u);
  EXPECT_EQ(st->shared[1].second.refused, 9u);
  EXPECT_EQ(s.hosts()[0].backoffs, 1u);
  // Another sidecar learned a lower level: adopted at the next poll, once.
  st->fleet = bucket_store::shared_concurrency{concurrency_memory{5, 6}, 1};
  s.poll(now());
  EXPECT_EQ(s.hosts()[0].cap, 5u);
  EXPECT_EQ(s.hosts()[0].cap_source, concurrency_source::shared);
}

}  // namespace
}  // namespace okta_sidecar::ratelimit
