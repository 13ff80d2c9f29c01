#pragma once
// Protocol settings both sides of the sidecar share.
#include <openssl/ssl.h>

#include <string_view>

namespace okta_sidecar::tls::detail {

inline constexpr std::string_view alpn_http11 = "http/1.1";

// TLS 1.2 as the floor (issue 6: "TLS 1.2+ only"); for 1.2, forward-secret ECDHE with AEAD
// ciphers only (Mozilla "intermediate"); TLS 1.3's suites are all AEAD already. No
// compression (CRIME). Idle connections give their buffers back.
void apply_protocol_policy(SSL_CTX* ctx);

}  // namespace okta_sidecar::tls::detail
