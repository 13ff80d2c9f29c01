#pragma once
// When an upstream attempt that failed may be tried again, and after how long. Pure: the
// caller supplies `now`, the deadline and the random number, and does the sleeping.
#include <cstdint>
#include <string_view>

#include "okta_sidecar/clock.hpp"

namespace okta_sidecar::resilience {

struct retry_settings {
  std::uint32_t max_attempts = 3;  // attempts in total, the first one included
  duration base_backoff = std::chrono::milliseconds(100);
  duration max_backoff = std::chrono::seconds(2);
  double budget_fraction = 0.2;  // retries allowed per recent downstream request
  duration budget_window = std::chrono::seconds(10);
  std::uint32_t budget_min_retries = 10;  // floor per window, so a quiet host can still retry
  // A try that got no response head in time is not tried again unless this is set: a hung
  // endpoint is an overloaded one, and another try only doubles the wait (Envoy's default).
  bool retry_on_timeout = false;
};

// How an attempt failed, ordered by how far the request got. 429s are not here: the rate
// limiter requeues them (Okta did not process them, any method is safe).
enum class failure_kind {
  connect_failed,     // TCP connect refused / timed out: nothing reached Okta
  tls_failed,         // handshake failed: nothing reached Okta
  reset_before_send,  // pooled connection found dead before any request byte was written
  reset_after_send,   // connection lost after (part of) the request was written
  response_timeout,   // no response headers in time: Okta may be processing it
  upstream_5xx,       // Okta answered 5xx (except 501)
};

// RFC 9110 §9.2.2: GET HEAD OPTIONS TRACE PUT DELETE. Method names are case-sensitive
// (RFC 9110 §9.1), so "get" is not GET.
bool is_idempotent(std::string_view method);

// True when the failure happened before any byte of the request could reach Okta.
bool failed_before_send(failure_kind kind);

struct retry_decision {
  bool retry = false;
  duration delay{};         // sleep this long, then try again
  const char* reason = "";  // one of the retry_reason constants below (metric label)
};

namespace retry_reason {
inline constexpr const char* retry = "retry";
inline constexpr const char* attempts_exhausted = "attempts_exhausted";
inline constexpr const char* not_idempotent = "not_idempotent";
inline constexpr const char* deadline = "deadline";
inline constexpr const char* timeout = "timeout";
}  // namespace retry_reason

// attempts_done: attempts already made (>= 1). random01 in [0,1) gives full jitter:
// delay = random01 * min(max_backoff, base_backoff * 2^(attempts_done-1)) (the AWS
// "full jitter" scheme: synchronised clients spread out instead of retrying in lockstep).
// The retry budget and an open breaker are checked by the caller (retry_budget,
// circuit_breaker::try_acquire) after a positive decision.
retry_decision decide_retry(const retry_settings& settings, std::string_view method, failure_kind kind,
                            std::uint32_t attempts_done, time_point now, time_point deadline,
                            double random01);

// The un-jittered ceiling of the delay before retry number `attempts_done`.
duration backoff_ceiling(const retry_settings& settings, std::uint32_t attempts_done);

const char* to_string(failure_kind kind);

}  // namespace okta_sidecar::resilience
