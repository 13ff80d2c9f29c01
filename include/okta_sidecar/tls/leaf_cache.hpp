#pragma once
// Per-host leaf certificates for intercepted tunnels, minted on first use and cached.
#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/tls/openssl_ptr.hpp"

namespace okta_sidecar::tls {

class certificate_authority;

// One EC P-256 key pair, made here and kept in memory only, backs every leaf: minting is then
// a signature, not a key generation, and no leaf key ever touches the disk. A leaf's SAN is
// exactly the host (DNS name, or IP address for literals); validity is now - 1 h .. now + 7 d
// and a leaf is re-minted once less than a day remains. Thread-safe.
class leaf_cache {
 public:
  // Keeps its own references to the CA certificate and key. `clock` (tests) defaults to the
  // system clock and must outlive the cache.
  explicit leaf_cache(const certificate_authority& ca, std::size_t max_entries = 10000,
                      const clock_source* clock = nullptr);
  ~leaf_cache();
  leaf_cache(const leaf_cache&) = delete;
  leaf_cache& operator=(const leaf_cache&) = delete;

  // The leaf for `host` (case-insensitive; "[v6]" brackets and one trailing dot accepted).
  // nullptr plus a message in *error when the host is not a valid DNS name or IP literal.
  std::shared_ptr<x509_st> get(std::string_view host, std::string* error = nullptr);

  std::size_t minted_count() const;
  std::size_t size() const;

  // The key every leaf certifies (install it once per SSL_CTX).
  evp_pkey_st* leaf_key() const noexcept { return leaf_key_.get(); }
  // The CA certificate when it is not self-issued (an intermediate from a mounted Secret):
  // servers must then send it after the leaf. nullptr for a root CA, which clients already hold.
  x509_st* chain_certificate() const noexcept { return chain_cert_.get(); }

 private:
  struct entry {
    std::shared_ptr<x509_st> cert;
    wall_time not_after;
    std::list<std::string>::iterator lru_position;
  };

  wall_time now() const;

  x509_ptr ca_cert_;
  evp_pkey_ptr ca_key_;
  x509_ptr chain_cert_;
  evp_pkey_ptr leaf_key_;
  std::size_t max_entries_;
  const clock_source* clock_;

  mutable std::mutex mutex_;
  std::unordered_map<std::string, entry> entries_;
  std::list<std::string> lru_;  // front = most recently used
  std::size_t minted_ = 0;
};

}  // namespace okta_sidecar::tls
