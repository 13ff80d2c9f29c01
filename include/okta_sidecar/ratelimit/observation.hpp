#pragma once
// Normalised view of one response's rate-limit headers (docs/architecture.md "Header dialects"): the
// scheduler and bucket code only ever see this form, never raw header text.
#include <cstdint>
#include <optional>

#include "okta_sidecar/clock.hpp"

namespace okta_sidecar::ratelimit {

// What kind of limit the headers describe.
// concurrency: Okta's concurrent-request 429 sends X-Rate-Limit-Limit: 0 and
// X-Rate-Limit-Remaining: 0; its reset is only a hint (~2 min ahead), not a window end.
enum class limit_kind { none, window, concurrency };

// Rate-limit facts from one response, with times already related to the local clocks.
struct observation {
  limit_kind kind = limit_kind::none;  // none: no usable rate-limit headers
  std::optional<std::int64_t> limit, remaining;
  std::optional<std::int64_t> reset_epoch;        // X-Rate-Limit-Reset as sent (epoch s)
  std::optional<time_point> reset_at;             // same instant on the local steady clock, Date-corrected;
                                                  // never before `now` (a past reset means open now)
  std::optional<duration> retry_after;            // Retry-After (delta-seconds or HTTP-date, Date-corrected)
  std::optional<std::int64_t> server_date_epoch;  // Date header
  int garbage = 0;                                // header values ignored as unparsable

  bool operator==(const observation&) const = default;
};

}  // namespace okta_sidecar::ratelimit
