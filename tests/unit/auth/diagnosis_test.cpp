#include "okta_sidecar/auth/diagnosis.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "jwt_builder.hpp"
#include "okta_sidecar/http/redact.hpp"

namespace okta_sidecar::auth {
namespace {

using test::jwt;

constexpr std::int64_t now = 1'700'000'000;  // the fake Okta clock for every case
const char* const host = "acme.okta.com";
const char* const e11 =
    R"({"errorCode":"E0000011","errorSummary":"Invalid token provided","errorLink":"E0000011","errorId":"oae1","errorCauses":[]})";
const char* const e06 =
    R"({"errorCode":"E0000006","errorSummary":"You do not have permission to perform the requested action","errorLink":"E0000006","errorId":"oae2","errorCauses":[]})";

// A Bearer header for an org-AS token with the given extra claims.
std::string bearer(const std::string& extra_claims, const std::string& iss = "https://acme.okta.com",
                   const std::string& aud = "https://acme.okta.com") {
  std::string claims = R"({"iss":")" + iss + R"(","aud":")" + aud +
                       R"(","cid":"0oaClient42","sub":"alice@example.com","iat":)" +
                       std::to_string(now - 600);
  if (!extra_claims.empty()) claims += "," + extra_claims;
  claims += "}";
  return "Bearer " + jwt(claims);
}

const std::string valid_lifetime = R"("exp":)" + std::to_string(now + 3000);

struct reason_case {
  std::string name;
  int status;
  std::string method;
  std::string path;
  std::string authorization;
  std::string body;
  std::string www_authenticate;
  std::string reason;
  std::string advice_fragment;
  std::string query_fragment;
};

std::vector<reason_case> reason_cases() {
  const std::string scp_users_read = valid_lifetime + R"(,"scp":["okta.users.read"])";
  return {
      {"Expired", 401, "GET", "/api/v1/users", bearer(R"("exp":)" + std::to_string(now - 312)), e11, "",
       "token_expired", "refresh the token; it expired 312 s ago for client 0oaClient42",
       "eventType eq \"app.oauth2.token.grant.access_token\" and client.id eq \"0oaClient42\""},
      {"ExpiredExactlyNow", 401, "GET", "/api/v1/users", bearer(R"("exp":)" + std::to_string(now)), e11, "",
       "token_expired", "expired 0 s ago", ""},
      {"ExpiredPerOktaDespiteClock", 401, "GET", "/api/v1/users", bearer(valid_lifetime), e11,
       R"(Bearer realm="IdpMyAccountAPI", error="invalid_token", error_description="The token has expired.")",
       "token_expired", "Okta reports it expired", ""},
      {"NotYetValidNbf", 401, "GET", "/api/v1/users",
       bearer(valid_lifetime + R"(,"nbf":)" + std::to_string(now + 45)), e11, "", "token_not_yet_valid",
       "valid only in 45 s", ""},
      {"NbfExactlyNowIsValid", 401, "GET", "/api/v1/users",
       bearer(valid_lifetime + R"(,"nbf":)" + std::to_string(now)), e11, "", "unknown", "", ""},
      {"IatFarInFuture", 401, "GET", "/api/v1/users",
       "Bearer " + jwt(R"({"iss":"https://acme.okta.com","aud":"https://acme.okta.com","iat":)" +
                       std::to_string(now + 3600) + "," + valid_lifetime + "}"),
       e11, "", "token_not_yet_valid", "3600 s in the future", ""},
      {"IatWithinLeeway", 401, "GET", "/api/v1/users",
       "Bearer " + jwt(R"({"iss":"https://acme.okta.com","aud":"https://acme.okta.com","iat":)" +
                       std::to_string(now + 60) + "," + valid_lifetime + "}"),
       e11, "", "unknown", "", ""},
      {"NoHeader", 401, "GET", "/api/v1/users", "", e11, "", "missing_bearer_prefix",
       "no Authorization header reached Okta", ""},
      {"BareToken", 401, "GET", "/api/v1/users", jwt("{}"), e11, "", "missing_bearer_prefix",
       "prefix it with 'Bearer '", ""},
      {"Truncated", 401, "GET", "/api/v1/users", "Bearer abc.def", e11, "", "token_malformed",
       "jwt_truncated", "outcome.result eq \"FAILURE\""},
      {"Quoted", 401, "GET", "/api/v1/users", "Bearer \"abc.def.ghi\"", e11, "", "token_malformed",
       "remove the quotes", ""},
      {"TrailingNewline", 401, "GET", "/api/v1/users", "Bearer abc.def.ghi\n", e11, "", "token_malformed",
       "trailing newline", ""},
      {"OpaqueBearer", 401, "GET", "/api/v1/users", "Bearer 00QCjAl4MlVWPXM0HmjFxvbGua", e11, "",
       "token_malformed", "'SSWS <token>'", ""},
      {"BasicScheme", 401, "GET", "/api/v1/users", "Basic dXNlcjpwYXNz", e11, "", "token_malformed",
       "accepts no other scheme", ""},
      {"CustomServerTokenOnManagementApi", 401, "GET", "/api/v1/users",
       bearer(valid_lifetime, "https://acme.okta.com/oauth2/default", "api://default"), e11, "",
       "wrong_authorization_server", "org authorization server", "app.oauth2.as.token.grant.access_token"},
      {"OrgTokenOnCustomServerUserinfo", 401, "GET", "/oauth2/aus1/v1/userinfo", bearer(valid_lifetime), e11,
       "", "wrong_authorization_server", "authorization server 'aus1'", ""},
      {"OtherCustomServerToken", 401, "GET", "/oauth2/aus1/v1/userinfo",
       bearer(valid_lifetime, "https://acme.okta.com/oauth2/aus2", "api://x"), e11, "",
       "wrong_authorization_server", "", ""},
      {"RightCustomServerToken", 401, "GET", "/oauth2/aus1/v1/userinfo",
       bearer(valid_lifetime, "https://acme.okta.com/oauth2/aus1", "api://x"), e11, "", "unknown",
       "passed local checks", ""},
      {"OtherOrgToken", 401, "GET", "/api/v1/users",
       bearer(valid_lifetime, "https://other.okta.com", "https://other.okta.com"), e11, "",
       "wrong_authorization_server", "issued by https://other.okta.com", ""},
      {"WrongIssuerBeatsExpiry", 401, "GET", "/api/v1/users",
       bearer(R"("exp":)" + std::to_string(now - 5), "https://acme.okta.com/oauth2/default"), e11, "",
       "wrong_authorization_server", "", ""},
      {"AudienceMismatch", 401, "GET", "/api/v1/users",
       bearer(valid_lifetime, "https://acme.okta.com", "api://default"), e11, "", "audience_mismatch",
       "audience is api://default", ""},
      {"AudienceWithSlashAndPortIsFine", 401, "GET", "/api/v1/users",
       bearer(valid_lifetime, "https://acme.okta.com", "https://acme.okta.com/"), e11, "", "unknown", "", ""},
      {"MissingScope", 403, "GET", "/api/v1/users", bearer(valid_lifetime + R"(,"scp":["okta.groups.read"])"),
       e06, "", "missing_scope:okta.users.read", "request scope okta.users.read for client 0oaClient42",
       "client.id eq \"0oaClient42\""},
      {"MissingManageScopeForWrite", 403, "POST", "/api/v1/users", bearer(scp_users_read), e06, "",
       "missing_scope:okta.users.manage", "", ""},
      {"ManageCoversRead", 403, "GET", "/api/v1/users",
       bearer(valid_lifetime + R"(,"scp":["okta.users.manage"])"), e06, "", "not_assigned_or_policy",
       "has the needed scope (okta.users.read)", ""},
      {"MissingScopeFromChallengeOnly", 403, "GET", "/api/v1/brand-new-thing", bearer(scp_users_read), e06,
       R"(Bearer error="insufficient_scope", scope="okta.brandNew.read okta.x", resource="/api/v1/x")",
       "missing_scope:okta.brandNew.read", "", ""},
      {"Insufficient401", 401, "GET", "/api/v1/logs", bearer(scp_users_read), e11,
       R"(Bearer error="insufficient_scope")", "missing_scope:okta.logs.read", "", ""},
      {"NotAssignedOrPolicy", 403, "DELETE", "/api/v1/groups/00g1",
       bearer(valid_lifetime + R"(,"scp":["okta.groups.manage"])"), e06, "", "not_assigned_or_policy",
       "E0000006", "user.account.privilege.grant"},
      {"ForbiddenUnknownEndpoint", 403, "GET", "/api/v1/brand-new-thing", bearer(scp_users_read), e06, "",
       "not_assigned_or_policy", "no needed scope is known to be missing", ""},
      {"SswsInvalid", 401, "GET", "/api/v1/users", "SSWS 00QCjAl4MlVWPXM0HmjFxvbGua", e11, "",
       "ssws_token_invalid", "the API token (SSWS", "system.api_token.revoke"},
      {"SswsForbidden", 403, "DELETE", "/api/v1/users/00u1", "SSWS 00QCjAl4MlVWPXM0HmjFxvbGua", e06, "",
       "not_assigned_or_policy", "admin who created this API token", ""},
      {"UnknownRevoked", 401, "GET", "/api/v1/users", bearer(scp_users_read), e11, "", "unknown",
       "E0000011 Invalid token provided", "app.oauth2.as.token.revoke"},
      {"ClientAuthAtTokenEndpoint", 401, "POST", "/oauth2/default/v1/token", "Basic dXNlcjpwYXNz",
       R"({"error":"invalid_client","error_description":"Client authentication failed."})", "", "unknown",
       "invalid_client - Client authentication failed.", ""},
      {"AuthnBadPassword", 401, "POST", "/api/v1/authn", "",
       R"({"errorCode":"E0000004","errorSummary":"Authentication failed"})", "", "unknown",
       "E0000004 Authentication failed", "user.session.start"},
      {"NotAnAuthStatus", 500, "GET", "/api/v1/users", bearer(valid_lifetime), "", "", "unknown",
       "not an authentication failure", ""},
      {"HostWithDefaultPort", 401, "GET", "/api/v1/users", bearer(R"("exp":)" + std::to_string(now - 1)), e11,
       "", "token_expired", "", ""},
  };
}

class ReasonTable : public ::testing::TestWithParam<reason_case> {};

TEST_P(ReasonTable, Diagnoses) {
  const reason_case& c = GetParam();
  const scope_table scopes = scope_table::builtin();
  const std::string h = c.name == "HostWithDefaultPort" ? "ACME.okta.com:443" : host;
  const diagnosis d = diagnose(c.status, c.method, c.path, h, inspect_authorization(c.authorization), c.body,
                               c.www_authenticate, now, scopes);
  EXPECT_EQ(d.reason, c.reason);
  EXPECT_NE(d.advice.find(c.advice_fragment), std::string::npos) << d.advice;
  EXPECT_NE(d.system_log_query.find(c.query_fragment), std::string::npos) << d.system_log_query;
  // Never personal data or the token, in any case.
  for (const std::string& out : {d.reason, d.advice, d.system_log_query}) {
    EXPECT_EQ(out.find("alice"), std::string::npos) << out;
    EXPECT_EQ(out.find('\n'), std::string::npos) << out;
    const std::size_t sp = c.authorization.find(' ');
    const std::string credential = sp == std::string::npos ? c.authorization : c.authorization.substr(sp + 1);
    if (credential.size() >= 8) {
      EXPECT_EQ(out.find(credential.substr(0, 8)), std::string::npos) << out;
    }
  }
  if (c.status == 401 || c.status == 403) {
    EXPECT_FALSE(d.advice.empty());
  }
  // The shell logs advice and query through the redactor: wording that looks like a secret
  // ("token: x", "Authorization: ...", "SSWS Word") would come out mangled in the log, or
  // would cut off the rest of the log line, while /status shows the original.
  EXPECT_EQ(http::redact_text(d.advice), d.advice);
  EXPECT_EQ(http::redact_text(d.system_log_query), d.system_log_query);
}

INSTANTIATE_TEST_SUITE_P(Auth, ReasonTable, ::testing::ValuesIn(reason_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(Diagnose, HostileClientIdStaysOutOfTheQuery) {
  const std::string auth =
      "Bearer " + jwt(R"({"iss":"https://acme.okta.com","aud":"https://acme.okta.com","exp":1,)"
                      R"("cid":"x\" or eventType pr or \""})");
  const diagnosis d = diagnose(401, "GET", "/api/v1/users", host, inspect_authorization(auth), e11, "", now,
                               scope_table::builtin());
  EXPECT_EQ(d.reason, "token_expired");
  EXPECT_EQ(d.system_log_query.find("client.id"), std::string::npos) << d.system_log_query;
  EXPECT_EQ(d.advice.find("for client"), std::string::npos) << d.advice;
}

TEST(Diagnose, OktaTextIsSanitisedAndBounded) {
  const std::string body =
      R"({"errorCode":"E0000011","errorSummary":"line1\nline2\"quoted\")" + std::string(500, 'x') + R"("})";
  const diagnosis d =
      diagnose(401, "GET", "/api/v1/users", host,
               inspect_authorization("Bearer " + jwt(R"({"iss":"https://acme.okta.com","exp":99999999999})")),
               body, "", now, scope_table::builtin());
  EXPECT_EQ(d.reason, "unknown");
  EXPECT_EQ(d.advice.find('\n'), std::string::npos);
  EXPECT_EQ(d.advice.find('"'), std::string::npos);
  EXPECT_LT(d.advice.size(), 400u);
}

TEST(Diagnose, GarbageBodiesAndChallengesAreHarmless) {
  const token_info t = inspect_authorization("Bearer " + jwt(R"({"iss":"https://acme.okta.com"})"));
  for (const char* body : {"", "{", "[]", "null", "<html>502</html>"}) {
    for (const char* challenge : {"", "Bearer", "Bearer ,,,", "Bearer error", "Bearer error=\"unterminated",
                                  "Bearer =x, error=invalid_token"}) {
      const diagnosis d =
          diagnose(401, "GET", "/api/v1/users", host, t, body, challenge, now, scope_table::builtin());
      EXPECT_FALSE(d.reason.empty()) << body << " | " << challenge;
    }
  }
}

}  // namespace
}  // namespace okta_sidecar::auth
