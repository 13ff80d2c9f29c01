#pragma once
// Owning handles for the OpenSSL objects this module hands out. The structs are only
// forward-declared so that headers of other modules stay free of <openssl/*.h>.
#include <memory>

struct x509_st;      // X509
struct evp_pkey_st;  // EVP_PKEY

namespace okta_sidecar::tls {

struct x509_deleter {
  void operator()(x509_st* cert) const noexcept;
};
struct evp_pkey_deleter {
  void operator()(evp_pkey_st* key) const noexcept;
};

using x509_ptr = std::unique_ptr<x509_st, x509_deleter>;
using evp_pkey_ptr = std::unique_ptr<evp_pkey_st, evp_pkey_deleter>;

// Shares an X509 the caller owns by bumping OpenSSL's own reference count, so the result
// stays valid however the other owners let go of theirs.
std::shared_ptr<x509_st> share_x509(x509_st* cert);

}  // namespace okta_sidecar::tls
