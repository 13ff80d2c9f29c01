#pragma once
// base64url decoding for JWT segments (RFC 4648 §5; RFC 7515 §2 says JWS omits padding).
#include <optional>
#include <string>
#include <string_view>

namespace okta_sidecar::auth {

// nullopt on any character outside the URL-safe alphabet (so '+' and '/' of plain base64 are
// rejected) or an impossible length. Trailing '=' padding is tolerated: a diagnosis should
// not fail over a padding quirk Okta itself never produces.
std::optional<std::string> base64url_decode(std::string_view in);

}  // namespace okta_sidecar::auth
