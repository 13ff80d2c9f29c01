#pragma once
// The TLS client side toward Okta.
#include <boost/asio/ssl/context.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace okta_sidecar::tls {

// TLS 1.2+, the system trust store plus the optional extra PEM bundle `trust_file` (throws
// std::runtime_error naming the file when it is unreadable, empty or not PEM), verify_peer,
// ALPN offering only http/1.1, and client session resumption keyed by host (see
// prepare_upstream_ssl). insecure = true turns verification off: the caller logs it loudly.
boost::asio::ssl::context make_upstream_context(const std::optional<std::string>& trust_file, bool insecure);

// Per connection, before the handshake: SNI (DNS names only, RFC 6066 §3) and hostname or IP
// verification for `host` (RFC 6125), plus a cached session for the host when there is one.
// False when host is not a valid DNS name or IP literal.
bool prepare_upstream_ssl(SSL* ssl, std::string_view host);

}  // namespace okta_sidecar::tls
