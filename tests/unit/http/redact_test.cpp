#include "okta_sidecar/http/redact.hpp"

#include <gtest/gtest.h>

namespace okta_sidecar::http {
namespace {

constexpr const char* jwt =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiIwMHUxIiwiZXhwIjoxfQ.c2lnbmF0dXJlLWJ5dGVz";

TEST(IsSecretHeader, Table) {
  for (const char* n : {"Authorization", "authorization", "PROXY-AUTHORIZATION", "Cookie", "Set-Cookie",
                        "X-Api-Key", "api-key", "X-Auth-Token", "X-CSRF-Token", "X-Okta-Session-Id",
                        "X-Client-Secret", "x-amz-security-token", "X-Signature"})
    EXPECT_TRUE(is_secret_header(n)) << n;
  for (const char* n : {"Host", "Content-Type", "X-Okta-Request-Id", "X-Rate-Limit-Remaining", "Accept",
                        "User-Agent", "WWW-Authenticate", "Date", "X-Okta-Retry-For"})
    EXPECT_FALSE(is_secret_header(n)) << n;
}

TEST(IsSecretParam, Table) {
  for (const char* n :
       {"client_secret", "password",      "id_token",      "access_token",     "refresh_token",
        "code",          "token",         "assertion",     "client_assertion", "state",
        "sessionToken",  "session_token", "code_verifier", "device_code",      "subject_token",
        "CLIENT-SECRET", "newPassword",   "otp",           "passCode",         "my_api_token"})
    EXPECT_TRUE(is_secret_param(n)) << n;
  for (const char* n : {"limit", "after", "filter", "q", "grant_type", "client_id", "redirect_uri", "scope",
                        "response_type", "nonce", "search", "expand", ""})
    EXPECT_FALSE(is_secret_param(n)) << n;
}

struct redact_case {
  const char* name;
  std::string in;
  std::string out;
};

void PrintTo(const redact_case& c, std::ostream* os) { *os << c.name; }

class RedactTarget : public ::testing::TestWithParam<redact_case> {};
TEST_P(RedactTarget, Table) { EXPECT_EQ(redact_target(GetParam().in), GetParam().out); }
INSTANTIATE_TEST_SUITE_P(
    Query, RedactTarget,
    ::testing::Values(
        redact_case{"PlainPathUntouched", "/api/v1/users/00u1abc/groups", "/api/v1/users/00u1abc/groups"},
        redact_case{"OrdinaryQueryUntouched",
                    "/api/v1/users?limit=200&after=00u5&filter=status%20eq%20%22ACTIVE%22",
                    "/api/v1/users?limit=200&after=00u5&filter=status%20eq%20%22ACTIVE%22"},
        redact_case{"ClientSecret",
                    "/oauth2/v1/token?grant_type=client_credentials&client_secret=s3cr3t&scope=x",
                    "/oauth2/v1/token?grant_type=client_credentials&client_secret=REDACTED&scope=x"},
        redact_case{"Password", "/x?username=bob&password=hunter2", "/x?username=bob&password=REDACTED"},
        redact_case{"Tokens", "/x?id_token=a&access_token=b&refresh_token=c&token=d",
                    "/x?id_token=REDACTED&access_token=REDACTED&refresh_token=REDACTED&token=REDACTED"},
        redact_case{"CodeAndState", "/cb?code=abc123&state=xyz", "/cb?code=REDACTED&state=REDACTED"},
        redact_case{"Assertions", "/t?assertion=a&client_assertion=b&client_assertion_type=urn",
                    "/t?assertion=REDACTED&client_assertion=REDACTED&client_assertion_type=urn"},
        redact_case{"SessionToken", "/oauth2/v1/authorize?client_id=c&sessionToken=20111abc",
                    "/oauth2/v1/authorize?client_id=c&sessionToken=REDACTED"},
        redact_case{"CaseInsensitiveName", "/x?Client_Secret=s", "/x?Client_Secret=REDACTED"},
        redact_case{"PercentEncodedName", "/x?client%5Fsecret=s", "/x?client%5Fsecret=REDACTED"},
        redact_case{"EmptyValue", "/x?password=", "/x?password=REDACTED"},
        redact_case{"JwtInOrdinaryParam", std::string("/x?id_token_hint=") + jwt,
                    "/x?id_token_hint=REDACTED"},
        redact_case{"JwtInOtherParam", std::string("/x?hint=") + jwt, "/x?hint=REDACTED"},
        redact_case{"BareJwtParam", std::string("/x?") + jwt, "/x?REDACTED"},
        redact_case{"JwtInPath", std::string("/x/") + jwt + "/y", "/x/REDACTED/y"},
        redact_case{"ValuelessParamKept", "/x?flag&limit=1", "/x?flag&limit=1"},
        redact_case{"AbsoluteFormUserinfo", "http://user:pw@acme.okta.com/x?a=1",
                    "http://REDACTED@acme.okta.com/x?a=1"},
        redact_case{"AbsoluteFormSecret", "http://acme.okta.com/x?password=p",
                    "http://acme.okta.com/x?password=REDACTED"},
        redact_case{"EmptyQuery", "/x?", "/x?"}),
    [](const auto& info) { return std::string(info.param.name); });

class RedactText : public ::testing::TestWithParam<redact_case> {};
TEST_P(RedactText, Table) { EXPECT_EQ(redact_text(GetParam().in), GetParam().out); }
INSTANTIATE_TEST_SUITE_P(
    Text, RedactText,
    ::testing::Values(
        // Auth schemes, anywhere in a line.
        redact_case{"Ssws", "sent SSWS 00QCjAl4MlV-WPXM_3a1d2Eb5bJ2bPtvtWQXDeYxsk to okta",
                    "sent SSWS REDACTED to okta"},
        redact_case{"SswsLowerCase", "ssws 00abc", "ssws REDACTED"},
        redact_case{"Bearer", std::string("Bearer ") + jwt, "Bearer REDACTED"},
        redact_case{"BearerOpaque", "sent bearer AbC123xyz", "sent bearer REDACTED"},
        redact_case{"SecretKeyHoldingScheme", "token: bearer AbC123xyz; access_token=Bearer x1",
                    "token: REDACTED; access_token=REDACTED"},
        redact_case{"Basic", "Basic dXNlcjpwYXNzd29yZA==", "Basic REDACTED"},
        redact_case{"DPoP", "DPoP eyJhbGciOi.x.y", "DPoP REDACTED"},
        redact_case{"AuthorizationHeaderLine", "Authorization: SSWS 00abc\nHost: a",
                    "Authorization: REDACTED\nHost: a"},
        redact_case{"ProxyAuthorizationHeaderLine",
                    "proxy-authorization: Basic Zm9vOmJhcg==", "proxy-authorization: REDACTED"},
        redact_case{"CookieHeaderLine", "Cookie: sid=abc; JSESSIONID=def", "Cookie: REDACTED"},
        redact_case{"SetCookieHeaderLine", "Set-Cookie: sid=abc; Path=/; HttpOnly\r\nX: y",
                    "Set-Cookie: REDACTED\r\nX: y"},
        // JWTs on their own.
        redact_case{"JwtAlone", std::string("got ") + jwt + ".", "got REDACTED"},
        redact_case{"JwtInQuotes", std::string("'") + jwt + "'", "'REDACTED'"},
        // key=value and forms.
        redact_case{"FormBody", "grant_type=password&username=bob&password=hunter2&client_secret=s",
                    "grant_type=password&username=bob&password=REDACTED&client_secret=REDACTED"},
        redact_case{"FormStartsWithCode", "code=abc&state=s", "code=REDACTED&state=REDACTED"},
        redact_case{"KeyValueInProse", "login failed password=hunter2 user=bob",
                    "login failed password=REDACTED user=bob"},
        redact_case{"KeyQuotedValue", "client_secret=\"a b c\" next", "client_secret=REDACTED next"},
        redact_case{"KeyColonValue", "password: hunter2, user: bob", "password: REDACTED, user: bob"},
        redact_case{"UrlInText", "GET /cb?code=abc&x=1 200", "GET /cb?code=REDACTED&x=1 200"},
        redact_case{"SuffixNames", "my_refresh_token=r apiSecret=s",
                    "my_refresh_token=REDACTED apiSecret=REDACTED"},
        // JSON.
        redact_case{"JsonString", R"({"client_secret":"s3cr3t","client_id":"c"})",
                    R"({"client_secret":"REDACTED","client_id":"c"})"},
        redact_case{"JsonSpaces", R"({ "password" : "p\"q", "a": 1 })",
                    R"({ "password" : "REDACTED", "a": 1 })"},
        redact_case{"JsonNestedObject", R"({"profile":{"password":{"value":"hunter2"}},"x":1})",
                    R"({"profile":{"password":"REDACTED"},"x":1})"},
        redact_case{"JsonSecretKeyHoldsObject", R"({"credentials":{"password":{"value":"hunter2"}},"x":1})",
                    R"({"credentials":"REDACTED","x":1})"},
        redact_case{"HyphenatedSecretHeaderLine", "X-Okta-Session-Id: abc def",
                    "X-Okta-Session-Id: REDACTED"},
        redact_case{"JsonNumber", R"({"passCode":123456,"x":1})", R"({"passCode":"REDACTED","x":1})"},
        redact_case{"JsonArray", R"({"access_token":["a","]"],"x":1})",
                    R"({"access_token":"REDACTED","x":1})"},
        redact_case{"JsonAuthorizationHeader", R"({"Authorization":"SSWS 00abc"})",
                    R"({"Authorization":"REDACTED"})"},
        redact_case{"JsonCodeAndState", R"({"code":"abc","state":"s"})",
                    R"({"code":"REDACTED","state":"REDACTED"})"},
        redact_case{"BearerInsideJsonValue", R"({"msg":"used Bearer AbCdEf123"})",
                    R"({"msg":"used Bearer REDACTED"})"},
        redact_case{"UnterminatedJson", R"({"password":"abc)", R"({"password":"REDACTED")"}),
    [](const auto& info) { return std::string(info.param.name); });

INSTANTIATE_TEST_SUITE_P(
    OrdinaryTextUntouched, RedactText,
    ::testing::Values(
        redact_case{"AccessLog",
                    R"(GET acme.okta.com /api/v1/users status=200 upstream_status=200 bytes=512 ms=12)",
                    R"(GET acme.okta.com /api/v1/users status=200 upstream_status=200 bytes=512 ms=12)"},
        redact_case{"ProseWithSchemeWords", "basic information about the bearer of this letter",
                    "basic information about the bearer of this letter"},
        redact_case{"ProseWithCode", "exit code=2 after retry", "exit code=2 after retry"},
        redact_case{"TokenWordAlone", "the token expired; password rotation due",
                    "the token expired; password rotation due"},
        redact_case{"ChallengeRealm", "Basic realm=\"okta-sidecar\"", "Basic realm=\"okta-sidecar\""},
        redact_case{"OrdinaryJson", R"({"status":"ACTIVE","id":"00u1","profile":{"login":"a@b.c"}})",
                    R"({"status":"ACTIVE","id":"00u1","profile":{"login":"a@b.c"}})"},
        redact_case{"RequestId", "X-Okta-Request-Id: Zx1abc-XYZ", "X-Okta-Request-Id: Zx1abc-XYZ"},
        redact_case{"EyWordNotJwt", "eyJust kidding", "eyJust kidding"}, redact_case{"Empty", "", ""},
        redact_case{"Utf8", "caf\xc3\xa9 ok", "caf\xc3\xa9 ok"}),
    [](const auto& info) { return std::string(info.param.name); });

// Regression (found by fuzz_redact): a quote in one line and a quote-colon in a later line looked
// like one JSON key whose name held "secret", and the "key" (with an SSWS token inside) was
// copied to the output verbatim.
TEST(RedactText, FuzzRegressionQuotesSpanningLines) {
  const std::string in = "x\"lo666\nSSWS Zq7XsEcReTv4lUe9Kp\nA{ofile\":q\"lo";
  EXPECT_EQ(redact_text(in).find("Zq7XsEcReTv4lUe9Kp"), std::string::npos) << redact_text(in);
}

// Regression (found by fuzz_redact): a quoted secret value with no closing quote on its line ate
// the opening quote of the next line's JSON key, so that key was no longer recognised.
TEST(RedactText, FuzzRegressionUnclosedQuotedValue) {
  const std::string in = "apikey=\"oc:pw\n\"access_token\":\"Zq7XsEcReTv4lUe9Kp\n";
  EXPECT_EQ(redact_text(in), "apikey=REDACTED\n\"access_token\":\"REDACTED\"");
  EXPECT_EQ(redact_text("x=\"a\" password\": \"p\""), "x=\"a\" password\": \"REDACTED\"");
}

TEST(RedactText, SecretInsideASecretJsonKeyIsScrubbed) {
  EXPECT_EQ(redact_text(R"({"token Bearer AbCdEf123456":"v"})"), R"({"token Bearer REDACTED":"REDACTED"})");
}

TEST(RedactText, SecretNeverSurvivesInAnyKnownForm) {
  const std::string secret = "00QCjAl4MlV-WPXM_3a1d2Eb5bJ2bPtvtWQXDeYxsk";
  const std::string forms[] = {"SSWS " + secret,
                               "Bearer " + secret,
                               "Authorization: SSWS " + secret,
                               "api_token=" + secret,
                               "\"refresh_token\": \"" + secret + "\"",
                               "password=" + secret,
                               "x-api-key: " + secret,
                               "client_secret:\t" + secret};
  for (const auto& f : forms) {
    for (const std::string& ctx : {std::string(), std::string("prefix "), std::string("{\"a\":1} ")}) {
      const std::string out = redact_text(ctx + f + " suffix");
      EXPECT_EQ(out.find(secret), std::string::npos) << ctx + f << " -> " << out;
    }
  }
}

}  // namespace
}  // namespace okta_sidecar::http
