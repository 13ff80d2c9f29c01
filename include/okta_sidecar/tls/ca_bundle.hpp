#pragma once
// The trust bundle for clients that *replace* their trust store (Go's SSL_CERT_FILE, Python's
// REQUESTS_CA_BUNDLE, curl's --cacert): the system roots plus the local CA, so traffic that
// bypasses the sidecar (NO_PROXY) still verifies. Served on GET /ca-bundle.pem and written to
// <state_dir>/ca-bundle.pem (mode 0644: it holds only public certificates).
#include <string>

namespace okta_sidecar::tls {

// The system roots OpenSSL itself would use: $SSL_CERT_FILE when set, else OpenSSL's default
// certificate file (/usr/lib/ssl/cert.pem -> /etc/ssl/certs/ca-certificates.crt on Debian).
// Returns the file name read into `pem`; an unreadable file gives "" and an empty `pem`.
std::string read_system_roots(std::string& pem);

// System roots, then the local CA, each PEM block ending in a newline.
std::string make_ca_bundle(const std::string& system_roots_pem, const std::string& ca_pem);

// Writes `content` to `file` (mode 0644) through a temporary file and rename(2), so a reader
// never sees half a bundle. Throws std::runtime_error naming the file.
void write_public_file(const std::string& file, const std::string& content);

}  // namespace okta_sidecar::tls
