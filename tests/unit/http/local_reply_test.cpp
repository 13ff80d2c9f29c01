#include "okta_sidecar/http/local_reply.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

namespace okta_sidecar::http {
namespace {

constexpr std::int64_t now = 1700000000;  // Tue, 14 Nov 2023 22:13:20 GMT

std::map<std::string, std::string> header_map(const local_reply& r) {
  std::map<std::string, std::string> m;
  for (const auto& [n, v] : r.headers) {
    EXPECT_EQ(m.count(n), 0u) << "duplicate header " << n;
    m[n] = v;
  }
  return m;
}

struct reply_case {
  local_error error;
  int status;
  const char* reason;
  const char* error_code;
  std::vector<std::string> extra_headers;  // beyond Content-Type, X-Okta-Sidecar-Error, Date, Cache-Control
};

class LocalReply : public ::testing::TestWithParam<reply_case> {};

TEST_P(LocalReply, StatusHeadersAndBody) {
  const auto& c = GetParam();
  const auto r = make_local_reply(c.error, "oaeSidecar123", "", now);
  EXPECT_EQ(r.status, c.status);
  EXPECT_EQ(r.reason, c.reason);
  EXPECT_EQ(status_of(c.error), c.status);
  EXPECT_EQ(reason_of(c.error), c.reason);
  auto h = header_map(r);
  EXPECT_EQ(h["Content-Type"], "application/json");
  EXPECT_EQ(h["X-Okta-Sidecar-Error"], c.reason);
  EXPECT_EQ(h["Date"], "Tue, 14 Nov 2023 22:13:20 GMT");
  EXPECT_EQ(h["Cache-Control"], "no-cache, no-store");
  std::vector<std::string> extra;
  for (const auto& [n, v] : r.headers)
    if (n != "Content-Type" && n != "X-Okta-Sidecar-Error" && n != "Date" && n != "Cache-Control")
      extra.push_back(n);
  EXPECT_EQ(extra, c.extra_headers);
  EXPECT_EQ(h.count("Content-Length"), 0u);

  // Exact shape and key order of Okta's error JSON.
  const auto j = nlohmann::ordered_json::parse(r.body);
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  EXPECT_EQ(keys,
            (std::vector<std::string>{"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"}));
  EXPECT_EQ(j["errorCode"], c.error_code);
  EXPECT_EQ(j["errorLink"], c.error_code);
  EXPECT_EQ(j["errorId"], "oaeSidecar123");
  EXPECT_TRUE(j["errorCauses"].is_array());
  EXPECT_TRUE(j["errorCauses"].empty());
  EXPECT_FALSE(j["errorSummary"].get<std::string>().empty());
}

INSTANTIATE_TEST_SUITE_P(
    All, LocalReply,
    ::testing::Values(
        reply_case{local_error::host_not_allowed, 403, "host_not_allowed", "E0000006", {}},
        reply_case{local_error::circuit_open, 503, "circuit_open", "E0000009", {"Retry-After"}},
        reply_case{local_error::rate_limited,
                   429,
                   "rate_limited",
                   "E0000047",
                   {"Retry-After", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset"}},
        reply_case{local_error::upstream_unreachable, 502, "upstream_unreachable", "E0000009", {}},
        reply_case{local_error::upstream_timeout, 504, "upstream_timeout", "E0000009", {}},
        reply_case{local_error::bad_request, 400, "bad_request", "E0000003", {}},
        reply_case{local_error::payload_too_large, 413, "bad_request", "E0000003", {}},
        reply_case{local_error::headers_too_large, 431, "bad_request", "E0000003", {}},
        reply_case{local_error::shutting_down, 503, "shutting_down", "E0000009", {"Retry-After"}},
        reply_case{
            local_error::proxy_auth_required, 407, "proxy_auth_required", "E0000004", {"Proxy-Authenticate"}},
        reply_case{local_error::client_not_allowed, 403, "client_not_allowed", "E0000006", {}},
        reply_case{local_error::token_expired, 401, "token_expired", "E0000011", {"WWW-Authenticate"}}),
    [](const auto& info) { return std::string(info.param.reason) + std::to_string(info.param.status); });

TEST(LocalReplyRateLimited, OktaSummaryAndEchoedHeaders) {
  const auto r = make_local_reply(local_error::rate_limited, "id", "queue full", now, 7,
                                  rate_limit_echo{600, 3, now + 30});
  auto h = header_map(r);
  EXPECT_EQ(h["Retry-After"], "7");
  EXPECT_EQ(h["X-Rate-Limit-Limit"], "600");
  EXPECT_EQ(h["X-Rate-Limit-Remaining"], "3");
  EXPECT_EQ(h["X-Rate-Limit-Reset"], std::to_string(now + 30));
  const auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["errorSummary"], "API call exceeded rate limit due to too many requests. queue full");
}

TEST(LocalReplyRateLimited, SynthesizesResetWhenUnknown) {
  const auto r = make_local_reply(local_error::rate_limited, "id", "", now, 12);
  auto h = header_map(r);
  EXPECT_EQ(h["Retry-After"], "12");
  EXPECT_EQ(h["X-Rate-Limit-Reset"], std::to_string(now + 12));
  EXPECT_EQ(h["X-Rate-Limit-Remaining"], "0");
  EXPECT_EQ(h.count("X-Rate-Limit-Limit"), 0u);
}

TEST(LocalReplyRateLimited, StaleResetIsRaisedToRetryAfter) {
  // An SDK waits reset - Date + 1: a reset in the past would make it retry at once.
  const auto r =
      make_local_reply(local_error::rate_limited, "id", "", now, 5, rate_limit_echo{600, 0, now - 100});
  EXPECT_EQ(header_map(r)["X-Rate-Limit-Reset"], std::to_string(now + 5));
}

TEST(LocalReplyRateLimited, RetryAfterFromResetWhenNotGiven) {
  const auto r = make_local_reply(local_error::rate_limited, "id", "", now, std::nullopt,
                                  rate_limit_echo{std::nullopt, std::nullopt, now + 42});
  auto h = header_map(r);
  EXPECT_EQ(h["Retry-After"], "42");
  EXPECT_EQ(h["X-Rate-Limit-Reset"], std::to_string(now + 42));
}

TEST(LocalReplyRetryAfter, ClampedToAtLeastOneSecond) {
  for (auto e : {local_error::rate_limited, local_error::circuit_open, local_error::shutting_down}) {
    for (std::optional<std::int64_t> ra :
         {std::optional<std::int64_t>{}, std::optional<std::int64_t>{0}, std::optional<std::int64_t>{-5}}) {
      EXPECT_EQ(header_map(make_local_reply(e, "id", "", now, ra))["Retry-After"], "1");
    }
    EXPECT_EQ(header_map(make_local_reply(e, "id", "", now, 30))["Retry-After"], "30");
  }
}

TEST(LocalReplyProxyAuth, BasicChallenge) {
  const auto r = make_local_reply(local_error::proxy_auth_required, "id", "", now);
  EXPECT_EQ(header_map(r)["Proxy-Authenticate"], "Basic realm=\"okta-sidecar\"");
}

TEST(LocalReplyTokenExpired, LikeOkta) {
  const auto j = nlohmann::json::parse(make_local_reply(local_error::token_expired, "id", "", now).body);
  EXPECT_EQ(j["errorCode"], "E0000011");
  EXPECT_EQ(j["errorSummary"], "Invalid token provided");
}

TEST(LocalReplyDetail, EscapedControlsStrippedAndSecretsRedacted) {
  const auto r =
      make_local_reply(local_error::bad_request, "id\"x", "bad \"thing\"\r\nSSWS 00abcdefSECRET \xff", now);
  const auto j = nlohmann::json::parse(r.body);  // valid JSON despite quotes and invalid UTF-8
  const std::string s = j["errorSummary"];
  EXPECT_THAT(s, ::testing::HasSubstr("bad \"thing\""));
  EXPECT_THAT(s, ::testing::Not(::testing::HasSubstr("00abcdefSECRET")));
  EXPECT_EQ(s.find('\r'), std::string::npos);
  EXPECT_EQ(j["errorId"], "id\"x");
}

TEST(FormatHttpDate, KnownInstants) {
  EXPECT_EQ(format_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(format_http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(format_http_date(951782400), "Tue, 29 Feb 2000 00:00:00 GMT");
  EXPECT_EQ(format_http_date(4102444799), "Thu, 31 Dec 2099 23:59:59 GMT");
}

}  // namespace
}  // namespace okta_sidecar::http

namespace okta_sidecar::http {
namespace {

TEST(LocalReplyIssue14, CleartextAndPoolReasons) {
  const auto c = make_local_reply(local_error::cleartext_refused, "id1", "", 1700000000);
  EXPECT_EQ(c.status, 403);
  EXPECT_EQ(c.reason, "cleartext_refused");
  const auto body = nlohmann::json::parse(c.body);
  EXPECT_EQ(body["errorCode"], "E0000006");
  EXPECT_NE(body["errorSummary"].get<std::string>().find("https://"), std::string::npos);
  bool header = false;
  for (const auto& [k, v] : c.headers) header |= k == "X-Okta-Sidecar-Error" && v == "cleartext_refused";
  EXPECT_TRUE(header);

  const auto p = make_local_reply(local_error::pool_exhausted, "id2", "", 1700000000, 2);
  EXPECT_EQ(p.status, 503);
  EXPECT_EQ(p.reason, "pool_exhausted");
  bool retry_after = false;
  for (const auto& [k, v] : p.headers) retry_after |= k == "Retry-After" && v == "2";
  EXPECT_TRUE(retry_after);
}

}  // namespace
}  // namespace okta_sidecar::http
