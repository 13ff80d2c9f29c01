#include "okta_sidecar/tls/leaf_cache.hpp"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <utility>

#include "okta_sidecar/tls/certificate_authority.hpp"
#include "openssl_util.hpp"

namespace okta_sidecar::tls {
namespace {

// Short-lived leaves: a leaked leaf is useless within days and no browser-style 200-day cap
// is ever approached; back-dating absorbs client clock skew.
constexpr auto leaf_backdate = std::chrono::hours(1);
constexpr auto leaf_lifetime = std::chrono::hours(24 * 7);
constexpr auto remint_margin = std::chrono::hours(24);

x509_ptr up_ref(X509* cert) {
  X509_up_ref(cert);
  return x509_ptr(cert);
}

evp_pkey_ptr up_ref(EVP_PKEY* key) {
  EVP_PKEY_up_ref(key);
  return evp_pkey_ptr(key);
}

bool set_time(ASN1_TIME* field, wall_time t) {
  return ASN1_TIME_set(field, wall_clock::to_time_t(t)) != nullptr;
}

// Returns nullptr (with the reason in *error) on an OpenSSL failure.
x509_ptr mint(const detail::normalized_host& host, X509* ca_cert, EVP_PKEY* ca_key, EVP_PKEY* leaf_key,
              wall_time now, std::string* error) {
  x509_ptr cert(X509_new());
  X509* x = cert.get();
  X509V3_CTX ctx;
  const bool ok = [&] {
    if (x == nullptr || X509_set_version(x, X509_VERSION_3) != 1 || !detail::set_random_serial(x)) {
      return false;
    }
    X509_NAME* name = X509_get_subject_name(x);
    // CN is only informative (clients match the SAN, RFC 6125 §6.4.4) and capped at 64.
    if (host.name.size() <= 64 &&
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(host.name.c_str()), -1, -1,
                                   0) != 1) {
      return false;
    }
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>("okta-sidecar"), -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(ca_cert)) != 1 ||
        !set_time(X509_getm_notBefore(x), now - leaf_backdate) ||
        !set_time(X509_getm_notAfter(x), now + leaf_lifetime) || X509_set_pubkey(x, leaf_key) != 1) {
      return false;
    }
    X509V3_set_ctx(&ctx, ca_cert, x, nullptr, nullptr, 0);
    // The host passed normalize_host: only [a-z0-9.-] or an IP literal, so it cannot inject
    // further entries into the openssl.cnf-style value.
    const std::string san = (host.is_ip ? "IP:" : "DNS:") + host.name;
    return detail::add_extension(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") &&
           detail::add_extension(x, &ctx, NID_key_usage, "critical,digitalSignature") &&
           detail::add_extension(x, &ctx, NID_ext_key_usage, "serverAuth") &&
           detail::add_extension(x, &ctx, NID_subject_alt_name, san) &&
           detail::add_extension(x, &ctx, NID_subject_key_identifier, "hash") &&
           detail::add_extension(x, &ctx, NID_authority_key_identifier, "keyid,issuer") &&
           X509_sign(x, ca_key, detail::signing_digest(ca_key)) > 0;
  }();
  if (!ok) {
    if (error != nullptr) {
      *error = "cannot mint a certificate for " + host.name + ": " + detail::take_openssl_error();
    } else {
      ERR_clear_error();
    }
    return nullptr;
  }
  return cert;
}

}  // namespace

leaf_cache::leaf_cache(const certificate_authority& ca, std::size_t max_entries, const clock_source* clock)
    : ca_cert_(up_ref(ca.certificate())),
      ca_key_(up_ref(ca.private_key())),
      leaf_key_(detail::make_p256_key()),
      max_entries_(max_entries == 0 ? 1 : max_entries),
      clock_(clock) {
  if (X509_check_issued(ca_cert_.get(), ca_cert_.get()) != X509_V_OK) {
    chain_cert_ = up_ref(ca_cert_.get());
  }
  ERR_clear_error();
}

leaf_cache::~leaf_cache() = default;

wall_time leaf_cache::now() const { return clock_ != nullptr ? clock_->wall_now() : wall_clock::now(); }

std::shared_ptr<x509_st> leaf_cache::get(std::string_view host, std::string* error) {
  auto normalized = detail::normalize_host(host, error);
  if (!normalized) {
    return nullptr;
  }
  const wall_time t = now();
  // Minting under the lock makes "once per host" exact even when many connections for a new
  // host arrive together; a mint is one ECDSA signature (tens of microseconds).
  std::lock_guard lock(mutex_);
  auto it = entries_.find(normalized->name);
  if (it != entries_.end() && it->second.not_after - t > remint_margin) {
    lru_.splice(lru_.begin(), lru_, it->second.lru_position);
    return it->second.cert;
  }
  x509_ptr minted = mint(*normalized, ca_cert_.get(), ca_key_.get(), leaf_key_.get(), t, error);
  if (!minted) {
    return nullptr;
  }
  ++minted_;
  std::shared_ptr<x509_st> cert(minted.release(), x509_deleter{});
  if (it != entries_.end()) {
    it->second.cert = cert;
    it->second.not_after = t + leaf_lifetime;
    lru_.splice(lru_.begin(), lru_, it->second.lru_position);
    return cert;
  }
  while (entries_.size() >= max_entries_) {
    entries_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(normalized->name);
  entries_.emplace(normalized->name, entry{cert, t + leaf_lifetime, lru_.begin()});
  return cert;
}

std::size_t leaf_cache::minted_count() const {
  std::lock_guard lock(mutex_);
  return minted_;
}

std::size_t leaf_cache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace okta_sidecar::tls
