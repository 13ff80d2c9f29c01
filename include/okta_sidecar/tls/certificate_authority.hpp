#pragma once
// The local CA that signs intercepted hosts' leaf certificates (loaded, or created on first start).
#include <optional>
#include <string>
#include <vector>

#include "okta_sidecar/tls/openssl_ptr.hpp"

namespace okta_sidecar::tls {

// Clients trust this CA for every name it signs, so its key is guarded like a password:
// created 0600, refused when readable by others, never written anywhere else.
class certificate_authority {
 public:
  // Loads cert + key PEM. When BOTH files are absent, creates an EC P-256 CA (parent
  // directories included; key 0600, cert 0644). Throws std::runtime_error naming the file and
  // the fix when only one file exists, the key is group/world readable, a file does not
  // parse, the key does not match the cert, or the cert is not a usable CA (no
  // basicConstraints CA:TRUE, no keyCertSign, expired, not yet valid).
  // Issue 14: the key must belong to the running user (mode 0600 or stricter) or to root (at
  // most group-readable), is opened without following a symbolic link and judged on the open
  // descriptor; directories created on the way are 0700. A created CA carries critical
  // nameConstraints permitting only `permitted` (DNS domains, each with its subdomains, and IP
  // literals; every other address excluded); empty `permitted` = no constraints.
  static certificate_authority load_or_create(const std::string& cert_file, const std::string& key_file,
                                              const std::vector<std::string>& permitted = {});

  // The first intercept_hosts entry ("acme.okta.com", "*.okta.com", "10.0.0.1:8443") whose
  // certificates this CA's nameConstraints would not permit; nullopt when every entry is
  // permitted or the CA has no constraints.
  std::optional<std::string> host_outside_constraints(const std::vector<std::string>& patterns) const;

  const std::string& certificate_pem() const noexcept { return cert_pem_; }
  // RFC 2253 form, e.g. "CN=okta-sidecar local CA web-1".
  std::string subject() const;
  // True when load_or_create made a new CA on this start (worth one log line).
  bool created() const noexcept { return created_; }

  x509_st* certificate() const noexcept { return cert_.get(); }
  evp_pkey_st* private_key() const noexcept { return key_.get(); }

 private:
  certificate_authority(x509_ptr cert, evp_pkey_ptr key, std::string pem, bool created);

  x509_ptr cert_;
  evp_pkey_ptr key_;
  std::string cert_pem_;
  bool created_ = false;
};

}  // namespace okta_sidecar::tls
