#pragma once
// Proxy-Authorization: Basic (RFC 7617) against a list of "user:password" credentials, compared
// in constant time so response timing does not reveal how much of a guess was right.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace okta_sidecar::policy {

// The credentials from access.proxy_auth_file / access.proxy_auth_env.
class proxy_auth {
 public:
  proxy_auth() = default;  // disabled: no credentials

  // "user:password" lines (the password may contain ':'), blank lines and "#" comments
  // skipped, surrounding whitespace trimmed. Throws std::runtime_error("line N: ...") for a
  // malformed line (never quoting it: it holds a password), a duplicate user, or no credentials.
  static proxy_auth from_lines(std::string_view text);

  bool enabled() const { return !credentials_.empty(); }

  // The user the Proxy-Authorization value authenticates, or nullopt. Every stored credential
  // is compared, each in time depending only on its own length. Fails closed when disabled.
  std::optional<std::string> authenticate(std::string_view proxy_authorization_value) const;
  bool check(std::string_view proxy_authorization_value) const {
    return authenticate(proxy_authorization_value).has_value();
  }

 private:
  struct credential {
    std::string user;
    std::string user_pass;  // "user:password", what the Basic value decodes to
  };
  std::vector<credential> credentials_;
};

// Equality in time that depends only on expected.size() (the secret's length): no early exit at
// the first difference, and the candidate's length only enters through the result.
bool constant_time_equal(std::string_view candidate, std::string_view expected);

// Strict base64 (RFC 4648 §4): standard alphabet, padding optional but correct if present.
std::optional<std::string> decode_base64(std::string_view text);

}  // namespace okta_sidecar::policy
