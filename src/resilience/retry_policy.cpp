#include "okta_sidecar/resilience/retry_policy.hpp"

#include <algorithm>
#include <array>

namespace okta_sidecar::resilience {

bool is_idempotent(std::string_view method) {
  static constexpr std::array<std::string_view, 6> idempotent = {"GET",   "HEAD", "OPTIONS",
                                                                 "TRACE", "PUT",  "DELETE"};
  return std::find(idempotent.begin(), idempotent.end(), method) != idempotent.end();
}

bool failed_before_send(failure_kind kind) {
  switch (kind) {
    case failure_kind::connect_failed:
    case failure_kind::tls_failed:
    case failure_kind::reset_before_send:
      return true;
    case failure_kind::reset_after_send:
    case failure_kind::response_timeout:
    case failure_kind::upstream_5xx:
      return false;
  }
  return false;
}

duration backoff_ceiling(const retry_settings& settings, std::uint32_t attempts_done) {
  const duration cap = std::max(settings.max_backoff, duration::zero());
  duration ceiling = std::max(settings.base_backoff, duration::zero());
  // Doubling step by step stops at the cap, so no 2^n can overflow.
  for (std::uint32_t n = 1; n < attempts_done && ceiling < cap; ++n) {
    ceiling = ceiling > cap / 2 ? cap : ceiling * 2;
  }
  return std::min(ceiling, cap);
}

retry_decision decide_retry(const retry_settings& settings, std::string_view method, failure_kind kind,
                            std::uint32_t attempts_done, time_point now, time_point deadline,
                            double random01) {
  if (attempts_done >= settings.max_attempts) return {false, {}, retry_reason::attempts_exhausted};
  if (kind == failure_kind::response_timeout && !settings.retry_on_timeout) {
    return {false, {}, retry_reason::timeout};
  }
  // Only a request that cannot have reached Okta, or one that Okta may safely see twice,
  // is sent again: a POST that may have been processed could create a user twice.
  if (!failed_before_send(kind) && !is_idempotent(method)) {
    return {false, {}, retry_reason::not_idempotent};
  }
  const double jitter = std::clamp(random01, 0.0, 1.0);
  const duration ceiling = backoff_ceiling(settings, std::max<std::uint32_t>(1, attempts_done));
  // Computed in double; the comparison keeps a huge ceiling from overflowing the cast back.
  const double scaled = jitter * static_cast<double>(ceiling.count());
  const duration delay =
      scaled >= static_cast<double>(ceiling.count()) ? ceiling : duration(static_cast<duration::rep>(scaled));
  // A retry that could only start at or after the deadline would be answered as a timeout
  // anyway; declining now gives the client the real error sooner.
  if (now >= deadline || delay >= deadline - now) return {false, {}, retry_reason::deadline};
  return {true, delay, retry_reason::retry};
}

const char* to_string(failure_kind kind) {
  switch (kind) {
    case failure_kind::connect_failed:
      return "connect_failed";
    case failure_kind::tls_failed:
      return "tls_failed";
    case failure_kind::reset_before_send:
      return "reset_before_send";
    case failure_kind::reset_after_send:
      return "reset_after_send";
    case failure_kind::response_timeout:
      return "response_timeout";
    case failure_kind::upstream_5xx:
      return "upstream_5xx";
  }
  return "unknown";
}

}  // namespace okta_sidecar::resilience
