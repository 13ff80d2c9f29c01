#pragma once
// The attempts of one proxied request as a sans-I/O state machine (the shape of Envoy's
// RetryStateImpl and of Boost.MySQL's sansio_connection_node): the shell reports what happened
// (admitted, a response head, a failure without one, the client gone) with `now`, and gets the
// next step back (admit, send, back off for D, wait for the scheduler's requeue, deliver, give
// up). It keeps the retry bookkeeping: attempts, failures, absorbed 429s, whether the body can
// be replayed, the deadline, and the backoff through retry_policy. Pure: no clock, no I/O.
#include <cstdint>
#include <functional>
#include <string>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/resilience/retry_policy.hpp"

namespace okta_sidecar::resilience {

// What the rate limiter made of an upstream 429 (the scheduler's response_kind, restated here
// so that this module does not depend on the rate limiter).
enum class limiter_verdict {
  deliver,  // not the limiter's to absorb: the client gets it
  requeue,  // Okta did not process it: send again once re-admitted
  give_up,  // cannot be re-admitted before the deadline: a local 429
};

enum class attempt_state {
  ready,        // constructed; start() begins the first attempt
  admitting,    // waiting for the breaker and the scheduler
  in_flight,    // sent (or being sent); waiting for a head or a failure
  backing_off,  // sleeping before the next attempt
  requeued,     // an absorbed 429: waiting for the scheduler to admit it again
  done,         // delivered or given up
};

enum class next_step { admit, send, backoff, requeue, deliver, give_up };

// Why a request ends without an upstream response to deliver.
enum class give_up_reason {
  none,
  upstream_unreachable,  // connect/TLS/reset failure, or a response body we could not read (502)
  upstream_timeout,      // no response head in time (504)
  rate_limited,          // the scheduler will not admit it in time (local 429, Retry-After)
  client_gone,           // the client left while the request waited
};

struct attempt_action {
  next_step step = next_step::admit;
  duration delay{};  // backoff: how long; give_up rate_limited: the Retry-After
  give_up_reason reason = give_up_reason::none;
};

// The shared retry budget: true when a retry may go now (and it was counted).
using retry_allowance = std::function<bool(time_point now)>;

class attempt_machine {
 public:
  // replayable: the request body is held whole (not streamed from the client), so it can be
  // sent again. deadline: client.request_timeout_ms from the request's start.
  attempt_machine(const retry_settings& settings, std::string method, bool replayable, time_point deadline);

  // ready -> admitting. The first attempt.
  attempt_action start();
  // admitting or requeued -> in_flight: send.
  attempt_action on_admitted();
  // admitting or requeued -> done: the scheduler refused (rate_limited, with its Retry-After).
  attempt_action on_admission_refused(duration retry_after);
  // any -> done: the client went away while the request waited.
  attempt_action on_client_gone();
  // in_flight -> backing_off (retry policy, replayable body and budget allow) or done (504 for
  // a response timeout, else 502).
  attempt_action on_failure(failure_kind kind, time_point now, double random01,
                            const retry_allowance& budget);
  // Whether the shell must read this response's body whole before on_response: a 429 to absorb
  // or a 5xx that may be retried (the connection is then free for the next attempt).
  bool must_read_whole(int status, limiter_verdict verdict) const;
  // in_flight -> requeued (an absorbed 429), backing_off (a retried 5xx), or done: deliver, a
  // local 429 (the limiter gives up; `limiter_retry_after`), or 502 when a body that had to be
  // read whole could not be (`body_read` false).
  attempt_action on_response(int status, limiter_verdict verdict, duration limiter_retry_after,
                             bool body_read, time_point now, double random01, const retry_allowance& budget);
  // backing_off -> admitting: the next attempt.
  attempt_action on_backoff_elapsed();

  attempt_state state() const { return state_; }
  std::uint32_t attempts() const { return attempts_; }  // begun, the first included
  std::uint32_t failures() const { return failures_; }  // failures and 5xx that counted for the policy
  std::uint32_t requeues() const { return requeues_; }  // 429s absorbed (X-Okta-Retry-Count)
  std::uint32_t retries() const { return retries_; }    // failure retries (okta_sidecar_retries_total)
  bool replayable() const { return replayable_; }
  time_point deadline() const { return deadline_; }
  // retry_policy's reason for the last failure decision ("retry", "deadline", ...), for logs.
  const char* last_retry_reason() const { return last_reason_; }

 private:
  attempt_action finish(give_up_reason why, duration retry_after = {});
  attempt_action deliver();
  attempt_action retry_or(failure_kind kind, time_point now, double random01, const retry_allowance& budget,
                          attempt_action otherwise);

  const retry_settings& settings_;
  std::string method_;
  bool replayable_;
  time_point deadline_;
  attempt_state state_ = attempt_state::ready;
  std::uint32_t attempts_ = 0;
  std::uint32_t failures_ = 0;
  std::uint32_t requeues_ = 0;
  std::uint32_t retries_ = 0;
  const char* last_reason_ = "";
};

const char* to_string(attempt_state s);

}  // namespace okta_sidecar::resilience
