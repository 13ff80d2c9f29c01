#pragma once
// Explains an upstream 401/403 from what the sidecar saw: the request, the token's claims
// and Okta's error body / WWW-Authenticate header. Pure; the shell adds the reason as
// X-Okta-Sidecar-Diagnosis, logs advice + query, and counts the reason.
#include <cstdint>
#include <string>
#include <string_view>

#include "okta_sidecar/auth/scope_table.hpp"
#include "okta_sidecar/auth/token_info.hpp"

namespace okta_sidecar::auth {

struct diagnosis {
  std::string reason;            // one of diagnosis_reason below; missing_scope carries ":<scope>"
  std::string advice;            // one line for the app's engineer; never a token or `sub`
  std::string system_log_query;  // a System Log filter an Okta admin can paste
};

namespace diagnosis_reason {
inline constexpr const char* token_expired = "token_expired";
inline constexpr const char* token_not_yet_valid = "token_not_yet_valid";
inline constexpr const char* token_malformed = "token_malformed";
inline constexpr const char* missing_bearer_prefix = "missing_bearer_prefix";
inline constexpr const char* wrong_authorization_server = "wrong_authorization_server";
inline constexpr const char* audience_mismatch = "audience_mismatch";
inline constexpr const char* missing_scope_prefix = "missing_scope:";  // + scope
inline constexpr const char* not_assigned_or_policy = "not_assigned_or_policy";
inline constexpr const char* ssws_token_invalid = "ssws_token_invalid";
inline constexpr const char* unknown = "unknown";
}  // namespace diagnosis_reason

// status: the upstream status (401 or 403; anything else gives "unknown").
// host: the upstream host (Host header / SNI), "acme.okta.com" or "acme.okta.com:443".
// okta_now_epoch: Okta's clock in epoch seconds as estimated from Date headers.
diagnosis diagnose(int status, std::string_view method, std::string_view normalized_path,
                   std::string_view host, const token_info& token, std::string_view response_body,
                   std::string_view www_authenticate, std::int64_t okta_now_epoch, const scope_table& scopes);

}  // namespace okta_sidecar::auth
