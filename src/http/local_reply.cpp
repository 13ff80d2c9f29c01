#include "okta_sidecar/http/local_reply.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "okta_sidecar/http/redact.hpp"

namespace okta_sidecar::http {

namespace {

struct error_info {
  int status;
  std::string_view reason;
  // Okta error codes where Okta has one with the same meaning (docs/okta-behaviour.md), so SDK code that
  // switches on errorCode does the right thing: E0000047 rate limit, E0000011 invalid token,
  // E0000006 access denied, E0000009 server-side failure, E0000003 malformed request.
  std::string_view error_code;
  std::string_view summary;
};

error_info info(local_error e) {
  switch (e) {
    case local_error::host_not_allowed:
      return {403, "host_not_allowed", "E0000006", "okta-sidecar: destination host is not allowed."};
    case local_error::circuit_open:
      return {503, "circuit_open", "E0000009", "okta-sidecar: upstream is failing; circuit breaker open."};
    case local_error::rate_limited:
      return {429, "rate_limited", "E0000047", "API call exceeded rate limit due to too many requests."};
    case local_error::upstream_unreachable:
      return {502, "upstream_unreachable", "E0000009", "okta-sidecar: could not connect to upstream."};
    case local_error::upstream_timeout:
      return {504, "upstream_timeout", "E0000009", "okta-sidecar: upstream did not respond in time."};
    case local_error::bad_request:
      return {400, "bad_request", "E0000003", "okta-sidecar: malformed request."};
    case local_error::payload_too_large:
      return {413, "bad_request", "E0000003", "okta-sidecar: request body too large."};
    case local_error::headers_too_large:
      return {431, "bad_request", "E0000003", "okta-sidecar: request header fields too large."};
    case local_error::shutting_down:
      return {503, "shutting_down", "E0000009", "okta-sidecar: shutting down."};
    case local_error::proxy_auth_required:
      return {407, "proxy_auth_required", "E0000004", "okta-sidecar: proxy authentication required."};
    case local_error::client_not_allowed:
      return {403, "client_not_allowed", "E0000006", "okta-sidecar: client address is not allowed."};
    case local_error::token_expired:
      return {401, "token_expired", "E0000011", "Invalid token provided"};
    case local_error::cleartext_refused:
      return {403, "cleartext_refused", "E0000006",
              "okta-sidecar: cleartext HTTP to an intercepted host is refused; use https://."};
    case local_error::pool_exhausted:
      return {503, "pool_exhausted", "E0000009",
              "okta-sidecar: every upstream connection to this host is busy; retry shortly."};
  }
  return {500, "internal", "E0000009", "okta-sidecar: internal error."};
}

std::string clean_detail(std::string_view detail) {
  std::string out;
  for (char c : redact_text(detail)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  return out;
}

}  // namespace

std::string_view reason_of(local_error error) { return info(error).reason; }
int status_of(local_error error) { return info(error).status; }

std::string format_http_date(std::int64_t epoch_seconds) {
  using namespace std::chrono;
  const sys_seconds t{seconds{epoch_seconds}};
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss hms{t - day};
  static constexpr const char* wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02u %s %04d %02d:%02d:%02d GMT", wd[weekday{day}.c_encoding()],
                static_cast<unsigned>(ymd.day()), mon[static_cast<unsigned>(ymd.month()) - 1],
                static_cast<int>(ymd.year()), static_cast<int>(hms.hours().count()),
                static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()));
  return buf;
}

local_reply make_local_reply(local_error error, std::string_view error_id, std::string_view detail,
                             std::int64_t now_epoch, std::optional<std::int64_t> retry_after_s,
                             const rate_limit_echo& echo) {
  const error_info e = info(error);
  local_reply r;
  r.status = e.status;
  r.reason = std::string(e.reason);
  r.headers.emplace_back("Content-Type", "application/json");
  r.headers.emplace_back("X-Okta-Sidecar-Error", r.reason);
  r.headers.emplace_back("Date", format_http_date(now_epoch));
  r.headers.emplace_back("Cache-Control", "no-cache, no-store");

  switch (error) {
    case local_error::rate_limited: {
      // Okta SDKs wait reset - Date + 1 s (docs/okta-behaviour.md) and the Go and Python SDKs fail
      // without Date or X-Rate-Limit-Reset, so the reset must exist and must not be earlier
      // than the Retry-After we state: a stale reset would make every SDK retry at once.
      std::int64_t retry = retry_after_s.value_or(
          echo.reset_epoch && *echo.reset_epoch > now_epoch ? *echo.reset_epoch - now_epoch : 1);
      retry = std::max<std::int64_t>(retry, 1);
      const std::int64_t reset = std::max(echo.reset_epoch.value_or(0), now_epoch + retry);
      r.headers.emplace_back("Retry-After", std::to_string(retry));
      if (echo.limit) r.headers.emplace_back("X-Rate-Limit-Limit", std::to_string(*echo.limit));
      r.headers.emplace_back("X-Rate-Limit-Remaining", std::to_string(echo.remaining.value_or(0)));
      r.headers.emplace_back("X-Rate-Limit-Reset", std::to_string(reset));
      break;
    }
    case local_error::circuit_open:
    case local_error::shutting_down:
    case local_error::pool_exhausted:
      r.headers.emplace_back("Retry-After",
                             std::to_string(std::max<std::int64_t>(retry_after_s.value_or(1), 1)));
      break;
    case local_error::proxy_auth_required:
      r.headers.emplace_back("Proxy-Authenticate", "Basic realm=\"okta-sidecar\"");
      break;
    case local_error::token_expired:
      // What Okta sends with E0000011 for an OAuth access token (RFC 6750 §3).
      r.headers.emplace_back("WWW-Authenticate",
                             "Bearer realm=\"okta-sidecar\", error=\"invalid_token\", "
                             "error_description=\"The access token is expired.\"");
      break;
    case local_error::host_not_allowed:
    case local_error::cleartext_refused:
    case local_error::upstream_unreachable:
    case local_error::upstream_timeout:
    case local_error::bad_request:
    case local_error::payload_too_large:
    case local_error::headers_too_large:
    case local_error::client_not_allowed:
      break;
  }

  std::string summary(e.summary);
  if (const std::string d = clean_detail(detail); !d.empty()) {
    summary += ' ';
    summary += d;
  }
  nlohmann::ordered_json body;
  body["errorCode"] = e.error_code;
  body["errorSummary"] = summary;
  body["errorLink"] = e.error_code;
  body["errorId"] = error_id;
  body["errorCauses"] = nlohmann::ordered_json::array();
  r.body = body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return r;
}

}  // namespace okta_sidecar::http
