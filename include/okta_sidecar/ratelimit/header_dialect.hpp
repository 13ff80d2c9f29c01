#pragma once
// Turns response headers into an `observation`. Okta's X-Rate-Limit-* is the first dialect;
// Retry-After (RFC 9110 §10.2.3) is always honoured. Never throws: bad values are counted.
#include <optional>
#include <span>
#include <string_view>
#include <utility>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/ratelimit/observation.hpp"

namespace okta_sidecar::ratelimit {

using header_view = std::pair<std::string_view, std::string_view>;  // name (any case), value

// `now` / `wall_now` are the instants the response headers were received. `okta_offset` is
// this host's okta_offset_bound from earlier responses, if any: epochs are then placed with
// sub-second precision instead of against this response's whole-second Date alone.
observation parse_rate_limit_headers(std::span<const header_view> headers, time_point now, wall_time wall_now,
                                     std::optional<double> okta_offset = std::nullopt);

}  // namespace okta_sidecar::ratelimit
