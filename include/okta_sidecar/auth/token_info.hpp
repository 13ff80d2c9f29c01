#pragma once
// What the Authorization header of a request says, read locally for diagnosis only: a JWT's
// claims are decoded (base64url + JSON) but its signature is never checked, so nothing here
// may be used to grant access. The token itself is never kept: only a short fingerprint.
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace okta_sidecar::auth {

enum class credential_kind { none, bearer_jwt, bearer_opaque, ssws, malformed };

// malformed_reason values (stable; used in advice and tests):
//   missing_bearer_prefix     a token with no scheme in front of it
//   unsupported_scheme        a scheme other than Bearer/SSWS (Basic, Token, ...)
//   duplicate_bearer_prefix   "Bearer Bearer eyJ..."
//   empty_token               "Bearer" with nothing after it
//   token_quoted              "Bearer \"eyJ...\"" (quotes copied from JSON or a shell)
//   token_whitespace          whitespace or a line break inside the token
//   token_invalid_characters  characters outside RFC 6750 §2.1 b64token
//   token_too_large           longer than max_authorization_bytes: not decoded
//   jwt_truncated             only two of the three JWT segments, or an empty segment
//   jwt_wrong_segment_count   more than three segments
//   jwt_bad_base64            a segment is not base64url
//   jwt_not_json              header or claims are not a JSON object (or nest too deeply)
struct token_info {
  credential_kind kind = credential_kind::none;
  std::string malformed_reason;
  std::optional<std::int64_t> exp, iat, nbf;
  std::string iss, cid, sub;  // sub is personal data: never log or advise with it
  std::vector<std::string> aud, scp;
  // Keyed fingerprint (12 hex digits of HMAC-SHA-256 under the install's key) of a well-formed
  // credential only: a JWT whose three parts decode, or an SSWS token of Okta's shape. Empty
  // for anything else (a malformed value may be a pasted password) and when no key is given.
  std::string fingerprint;
};

// Keyed digest of a credential: HMAC-SHA-256 under a per-install random key (issue 14). The
// I/O side computes it with OpenSSL (tls::fingerprint_key); this pure module only calls it.
using credential_digest = std::function<std::array<std::uint8_t, 32>(std::string_view credential)>;

// Longest Authorization value that is decoded; Okta's access tokens are 1-2 KB.
inline constexpr std::size_t max_authorization_bytes = 16 * 1024;

// `authorization_value` is the raw value of the Authorization header ("" when absent).
// Never throws; every malformed input gives kind == malformed and a malformed_reason.
// `digest`: when set, well-formed credentials get a `fingerprint`.
token_info inspect_authorization(std::string_view authorization_value, const credential_digest& digest = {});

// An SSWS API token of the shape Okta issues: "00" then base64url characters, 20 to 64 in all.
bool is_ssws_shaped(std::string_view token);

// First 12 hex digits of a keyed digest: enough to tell tokens apart in logs, nothing to
// confirm a guess with unless one holds the key. `credential` is the token without its scheme.
std::string token_fingerprint(std::string_view credential, const credential_digest& digest);

// 64 bits of a hash of the credential for the rate limiter's per-caller fairness: one key per
// credential, the scheme ignored ("Bearer x" and "bearer x" are one caller). 0 when the
// value is empty (no caller known); never 0 otherwise. Keyed when `digest` is set (the
// running sidecar); plain SHA-256 otherwise (never shown anywhere, so no secret to guard).
std::uint64_t caller_key(std::string_view authorization_value, const credential_digest& digest = {});

// inspect_authorization and caller_key of one Authorization value, with one digest of its
// credential where the two take one each (a keyed digest is the costliest step of a request
// that carries a token). The proxy keeps a connection's last one: its requests nearly always
// carry the same value.
struct caller_info {
  std::string authorization;  // the value this was read from
  token_info token;
  std::uint64_t key = 0;  // caller_key(authorization, digest)
};
caller_info inspect_caller(std::string_view authorization_value, const credential_digest& digest = {});

// Budget saver: true when a Bearer JWT's exp lies more than margin_seconds before
// okta_now_epoch (Okta's clock as estimated from Date headers).
bool expired_beyond(const token_info& info, std::int64_t okta_now_epoch, std::int64_t margin_seconds);

const char* to_string(credential_kind kind);

}  // namespace okta_sidecar::auth
