#pragma once
// HTTP-date (RFC 9110 §5.6.7): parsing of all three forms, formatting of the preferred one.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace okta_sidecar::ratelimit {

// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), obsolete RFC 850
// ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime ("Sun Nov  6 08:49:37 1994").
// Returns epoch seconds, or nullopt for anything malformed or out of range.
std::optional<std::int64_t> parse_http_date(std::string_view text);

// IMF-fixdate, for the Date headers of responses the sidecar makes up itself.
std::string format_http_date(std::int64_t epoch_seconds);

}  // namespace okta_sidecar::ratelimit
