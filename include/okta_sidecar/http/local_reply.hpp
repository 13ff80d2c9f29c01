#pragma once
// The sidecar's own answers (docs/architecture.md, "Contract: responses the sidecar itself produces"),
// shaped like Okta's error JSON so Okta SDKs parse them as they parse Okta's own errors.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace okta_sidecar::http {

enum class local_error {
  host_not_allowed,
  circuit_open,
  rate_limited,
  upstream_unreachable,
  upstream_timeout,
  bad_request,
  payload_too_large,
  headers_too_large,
  shutting_down,
  proxy_auth_required,
  client_not_allowed,
  token_expired,
  cleartext_refused,  // http:// (or plaintext inside CONNECT) to an intercepted host (issue 14)
  pool_exhausted      // every upstream connection of the host busy until the deadline
};
// How many local_error values there are (pool_exhausted stays the last).
inline constexpr std::size_t local_error_count = static_cast<std::size_t>(local_error::pool_exhausted) + 1;

struct local_reply {
  int status = 500;
  std::string reason;  // the X-Okta-Sidecar-Error value, e.g. "rate_limited"
  // Includes X-Okta-Sidecar-Error, Content-Type, Date; never Content-Length or Connection
  // (framing and connection management are the caller's).
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // {"errorCode","errorSummary","errorLink","errorId","errorCauses":[]}
};

// Okta's X-Rate-Limit-* values as last seen for the bucket, echoed on a local 429.
struct rate_limit_echo {
  std::optional<std::int64_t> limit, remaining, reset_epoch;
};

// error_id: caller-supplied (random). detail: a short human summary appended to errorSummary
// (it is also passed through redact_text and stripped of control characters).
// retry_after_s: for rate_limited, circuit_open and shutting_down (clamped to >= 1; default 1,
// or the time to the echoed reset for rate_limited).
local_reply make_local_reply(local_error error, std::string_view error_id, std::string_view detail,
                             std::int64_t now_epoch, std::optional<std::int64_t> retry_after_s = {},
                             const rate_limit_echo& echo = {});

// The X-Okta-Sidecar-Error reason for an error (contract names: 400/413/431 all "bad_request").
std::string_view reason_of(local_error error);
int status_of(local_error error);

// IMF-fixdate (RFC 9110 §5.6.7), e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
std::string format_http_date(std::int64_t epoch_seconds);

}  // namespace okta_sidecar::http
