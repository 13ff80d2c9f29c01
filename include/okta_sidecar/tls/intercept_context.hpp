#pragma once
// The TLS server side of intercepted CONNECT tunnels.
#include <boost/asio/ssl/context.hpp>
#include <functional>
#include <string>
#include <string_view>

namespace okta_sidecar::tls {

class leaf_cache;

// TLS 1.2+ (ECDHE + AEAD suites only for 1.2), ALPN selects "http/1.1" when offered and never
// h2 (docs/architecture.md: HTTP/1.1 on both legs), and an SNI callback that installs the leaf for the SNI
// name, or refuses the handshake with an unrecognized_name alert when `sni_allowed` says no.
// `sni_allowed` (empty = every name) runs on the handshaking thread, concurrently across I/O
// threads. `cache` must outlive the context and every SSL made from it.
boost::asio::ssl::context make_intercept_context(leaf_cache& cache,
                                                 std::function<bool(std::string_view sni_host)> sni_allowed);

// Before the handshake: installs the leaf for the CONNECT host, which serves clients that send
// no SNI (the SNI callback replaces it when they do). False when the host is invalid.
bool use_leaf_for(SSL* ssl, leaf_cache& cache, std::string_view host);

// After the handshake: the SNI the client sent, lowercased ("" if none).
std::string sni_of(SSL* ssl);

}  // namespace okta_sidecar::tls
