#pragma once
// Helpers shared by the tls module's sources (not part of its public interface).
#include <openssl/x509.h>

#include <optional>
#include <string>
#include <string_view>

#include "okta_sidecar/tls/openssl_ptr.hpp"

namespace okta_sidecar::tls::detail {

// Drains this thread's OpenSSL error queue into one readable line. Leftover entries would
// make a later, unrelated SSL_get_error on the same thread report SSL_ERROR_SSL.
std::string take_openssl_error();

// A host as a certificate names it: lowercase, without "[...]" or a trailing root dot.
struct normalized_host {
  std::string name;  // DNS name, or the canonical text of an IP address
  bool is_ip = false;
};
std::optional<normalized_host> normalize_host(std::string_view host, std::string* error);

// A fresh EC P-256 key (throws std::runtime_error on failure).
evp_pkey_ptr make_p256_key();

// A random positive 128-bit serial (RFC 5280 §4.1.2.2 caps serials at 20 octets; randomness
// keeps issuer+serial unique across re-created CAs, which Firefox insists on).
bool set_random_serial(X509* cert);

// Adds an extension written in openssl.cnf syntax; value must come from trusted text.
bool add_extension(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value);

// SHA-256 for RSA/EC keys; nullptr for EdDSA keys, which hash internally.
const EVP_MD* signing_digest(EVP_PKEY* key);

}  // namespace okta_sidecar::tls::detail
