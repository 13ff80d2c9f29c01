// The attempts of one request, walked one transition at a time with a hand-driven clock.
#include "okta_sidecar/resilience/attempt_machine.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fake_clock.hpp"

namespace okta_sidecar::resilience {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A budget that answers as told and counts how often it was asked.
struct fake_budget {
  bool allow = true;
  int asked = 0;
  retry_allowance fn() {
    return [this](time_point) {
      ++asked;
      return allow;
    };
  }
};

struct rig {
  testing::fake_clock clock;
  retry_settings settings;  // 3 attempts, 100 ms base, 2 s cap, no retry on timeout
  fake_budget budget;
  attempt_machine make(std::string method = "GET", bool replayable = true, duration timeout = seconds(30)) {
    return attempt_machine(settings, std::move(method), replayable, clock.now() + timeout);
  }
  // start + admitted: the first attempt is on the wire.
  attempt_machine sent(std::string method = "GET", bool replayable = true) {
    auto m = make(std::move(method), replayable);
    EXPECT_EQ(m.start().step, next_step::admit);
    EXPECT_EQ(m.on_admitted().step, next_step::send);
    return m;
  }
  attempt_action fail(attempt_machine& m, failure_kind k, double random01 = 0.5) {
    return m.on_failure(k, clock.now(), random01, budget.fn());
  }
  attempt_action respond(attempt_machine& m, int status, limiter_verdict v = limiter_verdict::deliver,
                         bool body_read = true, duration retry_after = {}) {
    return m.on_response(status, v, retry_after, body_read, clock.now(), 0.5, budget.fn());
  }
};

TEST(AttemptMachine, FirstAttemptIsAdmittedThenSentThenDelivered) {
  rig r;
  auto m = r.make();
  EXPECT_EQ(m.state(), attempt_state::ready);
  EXPECT_EQ(m.start().step, next_step::admit);
  EXPECT_EQ(m.state(), attempt_state::admitting);
  EXPECT_EQ(m.attempts(), 1u);
  EXPECT_EQ(m.on_admitted().step, next_step::send);
  EXPECT_EQ(m.state(), attempt_state::in_flight);
  EXPECT_EQ(r.respond(m, 200).step, next_step::deliver);
  EXPECT_EQ(m.state(), attempt_state::done);
  EXPECT_EQ(m.attempts(), 1u);
  EXPECT_EQ(r.budget.asked, 0) << "a success spends no retry budget";
}

TEST(AttemptMachine, ConnectFailureBacksOffWithJitterThenAdmitsAgain) {
  rig r;
  auto m = r.sent();
  const auto a = r.fail(m, failure_kind::connect_failed, 0.5);
  EXPECT_EQ(a.step, next_step::backoff);
  EXPECT_EQ(a.delay, milliseconds(50)) << "full jitter: 0.5 x the 100 ms base";
  EXPECT_EQ(m.state(), attempt_state::backing_off);
  EXPECT_EQ(r.budget.asked, 1);
  EXPECT_STREQ(m.last_retry_reason(), retry_reason::retry);
  r.clock.advance(a.delay);
  EXPECT_EQ(m.on_backoff_elapsed().step, next_step::admit);
  EXPECT_EQ(m.attempts(), 2u);
  EXPECT_EQ(m.on_admitted().step, next_step::send);
  // The second failure's ceiling doubles.
  const auto b = r.fail(m, failure_kind::tls_failed, 1.0);
  EXPECT_EQ(b.step, next_step::backoff);
  EXPECT_EQ(b.delay, milliseconds(200));
  EXPECT_EQ(m.retries(), 2u);
}

TEST(AttemptMachine, AttemptsExhaustedGivesUpUnreachable) {
  rig r;
  auto m = r.sent();
  for (int i = 1; i < 3; ++i) {
    ASSERT_EQ(r.fail(m, failure_kind::reset_before_send).step, next_step::backoff);
    m.on_backoff_elapsed();
    m.on_admitted();
  }
  const auto last = r.fail(m, failure_kind::reset_before_send);
  EXPECT_EQ(last.step, next_step::give_up);
  EXPECT_EQ(last.reason, give_up_reason::upstream_unreachable);
  EXPECT_EQ(m.attempts(), 3u);
  EXPECT_EQ(m.failures(), 3u);
  EXPECT_STREQ(m.last_retry_reason(), retry_reason::attempts_exhausted);
  EXPECT_EQ(r.budget.asked, 2) << "the budget is asked only when the policy would retry";
}

TEST(AttemptMachine, ResponseTimeoutIsA504UnlessRetryOnTimeout) {
  rig r;
  auto m = r.sent();
  const auto a = r.fail(m, failure_kind::response_timeout);
  EXPECT_EQ(a.step, next_step::give_up);
  EXPECT_EQ(a.reason, give_up_reason::upstream_timeout);
  EXPECT_STREQ(m.last_retry_reason(), retry_reason::timeout);

  r.settings.retry_on_timeout = true;
  auto m2 = r.sent();
  EXPECT_EQ(r.fail(m2, failure_kind::response_timeout).step, next_step::backoff);
}

TEST(AttemptMachine, IdempotencyDecidesAfterTheRequestMayHaveArrived) {
  struct row {
    const char* method;
    failure_kind kind;
    next_step step;
  };
  const std::vector<row> rows = {
      {"POST", failure_kind::connect_failed, next_step::backoff},
      {"POST", failure_kind::tls_failed, next_step::backoff},
      {"POST", failure_kind::reset_before_send, next_step::backoff},
      {"POST", failure_kind::reset_after_send, next_step::give_up},
      {"PATCH", failure_kind::reset_after_send, next_step::give_up},
      {"GET", failure_kind::reset_after_send, next_step::backoff},
      {"DELETE", failure_kind::reset_after_send, next_step::backoff},
  };
  for (const auto& row : rows) {
    rig r;
    auto m = r.sent(row.method);
    EXPECT_EQ(r.fail(m, row.kind).step, row.step) << row.method << " " << to_string(row.kind);
  }
}

TEST(AttemptMachine, AStreamedBodyIsNeverSentTwiceAndSpendsNoBudget) {
  rig r;
  auto m = r.sent("GET", false);
  const auto a = r.fail(m, failure_kind::connect_failed);
  EXPECT_EQ(a.step, next_step::give_up);
  EXPECT_EQ(a.reason, give_up_reason::upstream_unreachable);
  EXPECT_EQ(r.budget.asked, 0);
}

TEST(AttemptMachine, AnEmptyRetryBudgetGivesUp) {
  rig r;
  r.budget.allow = false;
  auto m = r.sent();
  EXPECT_EQ(r.fail(m, failure_kind::connect_failed).step, next_step::give_up);
  EXPECT_EQ(r.budget.asked, 1);
  EXPECT_EQ(m.retries(), 0u);
}

TEST(AttemptMachine, ABackoffThatWouldReachTheDeadlineGivesUp) {
  rig r;
  auto m = r.make("GET", true, milliseconds(300));
  m.start();
  m.on_admitted();
  r.clock.advance(milliseconds(260));  // 40 ms left; the backoff would be 50 ms
  const auto a = r.fail(m, failure_kind::connect_failed, 0.5);
  EXPECT_EQ(a.step, next_step::give_up);
  EXPECT_STREQ(m.last_retry_reason(), retry_reason::deadline);
  EXPECT_EQ(r.budget.asked, 0);
}

TEST(AttemptMachine, AnAbsorbed429IsRequeuedAndCountsAnotherAttempt) {
  rig r;
  auto m = r.sent("POST");
  EXPECT_TRUE(m.must_read_whole(429, limiter_verdict::requeue));
  const auto a = r.respond(m, 429, limiter_verdict::requeue);
  EXPECT_EQ(a.step, next_step::requeue);
  EXPECT_EQ(m.state(), attempt_state::requeued);
  EXPECT_EQ(m.requeues(), 1u);
  EXPECT_EQ(m.on_admitted().step, next_step::send);
  EXPECT_EQ(m.attempts(), 2u);
  EXPECT_EQ(r.respond(m, 201).step, next_step::deliver);
  EXPECT_EQ(m.failures(), 0u) << "a 429 is not a failure";
  EXPECT_EQ(r.budget.asked, 0) << "nor does it spend the retry budget";
}

TEST(AttemptMachine, A429EvenWithAnUnreadBodyIsRequeued) {
  rig r;
  auto m = r.sent();
  EXPECT_EQ(r.respond(m, 429, limiter_verdict::requeue, false).step, next_step::requeue);
}

TEST(AttemptMachine, A429TheLimiterGivesUpOnIsALocal429WithItsRetryAfter) {
  rig r;
  auto m = r.sent();
  const auto a = r.respond(m, 429, limiter_verdict::give_up, true, seconds(7));
  EXPECT_EQ(a.step, next_step::give_up);
  EXPECT_EQ(a.reason, give_up_reason::rate_limited);
  EXPECT_EQ(a.delay, seconds(7));
  EXPECT_EQ(m.requeues(), 1u) << "counted for X-Okta-Retry-Count like a requeue";
}

TEST(AttemptMachine, A429TheLimiterDeliversOrAStreamedOneGoesToTheClient) {
  rig r;
  auto m = r.sent();
  EXPECT_FALSE(m.must_read_whole(429, limiter_verdict::deliver));
  EXPECT_EQ(r.respond(m, 429, limiter_verdict::deliver).step, next_step::deliver);
  auto streamed = r.sent("GET", false);
  EXPECT_FALSE(streamed.must_read_whole(429, limiter_verdict::requeue));
  EXPECT_EQ(r.respond(streamed, 429, limiter_verdict::requeue).step, next_step::deliver);
}

TEST(AttemptMachine, A5xxIsRetriedWhenItsBodyWasReadAndThePolicyAllows) {
  rig r;
  auto m = r.sent();
  EXPECT_TRUE(m.must_read_whole(503, limiter_verdict::deliver));
  const auto a = r.respond(m, 503);
  EXPECT_EQ(a.step, next_step::backoff);
  EXPECT_EQ(a.delay, milliseconds(50));
  EXPECT_EQ(m.failures(), 1u);
  m.on_backoff_elapsed();
  m.on_admitted();
  EXPECT_EQ(r.respond(m, 200).step, next_step::deliver);
  EXPECT_EQ(m.attempts(), 2u);
}

TEST(AttemptMachine, ResponsesThatAreDeliveredAsTheyAre) {
  struct row {
    const char* method;
    int status;
    bool replayable;
  };
  const std::vector<row> rows = {
      {"GET", 501, true},   // not a failure
      {"GET", 404, true},   // neutral
      {"POST", 503, true},  // Okta may have processed it
      {"GET", 503, false},  // streamed body
  };
  for (const auto& row : rows) {
    rig r;
    auto m = r.sent(row.method, row.replayable);
    EXPECT_EQ(r.respond(m, row.status).step, next_step::deliver) << row.method << " " << row.status;
  }
}

TEST(AttemptMachine, A5xxWhoseBodyCouldNotBeReadIsA502) {
  rig r;
  auto m = r.sent();
  const auto a = r.respond(m, 502, limiter_verdict::deliver, false);
  EXPECT_EQ(a.step, next_step::give_up);
  EXPECT_EQ(a.reason, give_up_reason::upstream_unreachable);
  EXPECT_EQ(r.budget.asked, 0);
}

TEST(AttemptMachine, A5xxRetryNeedsTheBudgetToo) {
  rig r;
  r.budget.allow = false;
  auto m = r.sent();
  EXPECT_EQ(r.respond(m, 500).step, next_step::deliver);
  EXPECT_EQ(r.budget.asked, 1);
}

TEST(AttemptMachine, AdmissionRefusedIsALocal429) {
  rig r;
  auto m = r.make();
  m.start();
  const auto a = m.on_admission_refused(seconds(3));
  EXPECT_EQ(a.step, next_step::give_up);
  EXPECT_EQ(a.reason, give_up_reason::rate_limited);
  EXPECT_EQ(a.delay, seconds(3));
  EXPECT_EQ(m.state(), attempt_state::done);
}

TEST(AttemptMachine, TheClientLeavingEndsTheRequestInAnyWaitingState) {
  rig r;
  auto queued = r.make();
  queued.start();
  EXPECT_EQ(queued.on_client_gone().reason, give_up_reason::client_gone);
  auto requeued = r.sent();
  r.respond(requeued, 429, limiter_verdict::requeue);
  const auto a = requeued.on_client_gone();
  EXPECT_EQ(a.step, next_step::give_up);
  EXPECT_EQ(a.reason, give_up_reason::client_gone);
  EXPECT_EQ(requeued.state(), attempt_state::done);
}

TEST(AttemptMachine, EventsOutOfOrderEndTheRequestInsteadOfLooping) {
  rig r;
  auto m = r.make();
  EXPECT_EQ(m.on_admitted().step, next_step::give_up) << "not started";
  auto n = r.sent();
  EXPECT_EQ(n.on_backoff_elapsed().step, next_step::give_up) << "not backing off";
  auto o = r.sent();
  r.respond(o, 200);
  EXPECT_EQ(r.fail(o, failure_kind::connect_failed).step, next_step::give_up) << "already done";
  EXPECT_EQ(r.budget.asked, 0);
}

TEST(AttemptMachine, AFullWalkThroughFailureFiveHundredAndSuccess) {
  rig r;
  auto m = r.make();
  std::vector<attempt_state> seen;
  m.start();
  m.on_admitted();
  r.fail(m, failure_kind::connect_failed);
  seen.push_back(m.state());
  m.on_backoff_elapsed();
  seen.push_back(m.state());
  m.on_admitted();
  r.respond(m, 500);
  seen.push_back(m.state());
  m.on_backoff_elapsed();
  m.on_admitted();
  EXPECT_EQ(r.respond(m, 200).step, next_step::deliver);
  seen.push_back(m.state());
  EXPECT_EQ(seen, (std::vector<attempt_state>{attempt_state::backing_off, attempt_state::admitting,
                                              attempt_state::backing_off, attempt_state::done}));
  EXPECT_EQ(m.attempts(), 3u);
  EXPECT_EQ(m.retries(), 2u);
  EXPECT_STREQ(to_string(m.state()), "done");
}

}  // namespace
}  // namespace okta_sidecar::resilience
