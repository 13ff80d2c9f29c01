#pragma once
// The redaction layer in front of every log sink and metric label. The sidecar sees every Okta
// API token and access token in its pod; none may reach a log line at any level (issue 6).
// Over-redaction is acceptable, a leak is not: when in doubt these functions scrub.
#include <string>
#include <string_view>

namespace okta_sidecar::http {

inline constexpr std::string_view redacted = "REDACTED";

// Header names whose values are credentials or session state: authorization,
// proxy-authorization, cookie, set-cookie, x-api-key, ..., and any name containing "token",
// "secret", "password", "session", "cookie", "api-key"/"apikey" or "signature".
bool is_secret_header(std::string_view name);

// Query/form parameter names that carry secrets: client_secret, password, id_token,
// access_token, refresh_token, code, token, assertion, client_assertion, state, sessionToken,
// code_verifier, device_code, ..., and any name ending in "token", "secret" or "password".
// Case, '_' and '-' are ignored ("sessionToken" = "session_token").
bool is_secret_param(std::string_view name);

// A request-target with the values of secret query parameters, userinfo and JWT-shaped values
// replaced by "REDACTED"; everything else (path, other parameters) kept for diagnosis.
std::string redact_target(std::string_view target);

// Free text: "SSWS x", "Bearer x", "Basic x", "DPoP x" credentials, JWT-shaped strings
// (eyJ...), key=value / key="value" / "key":"value" / key: value secrets for the names above,
// and "Authorization: ..." style header lines, anywhere in the text.
std::string redact_text(std::string_view text);

}  // namespace okta_sidecar::http
