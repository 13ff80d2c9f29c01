#include "openssl_util.hpp"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace okta_sidecar::tls {

void x509_deleter::operator()(x509_st* cert) const noexcept { X509_free(cert); }
void evp_pkey_deleter::operator()(evp_pkey_st* key) const noexcept { EVP_PKEY_free(key); }

std::shared_ptr<x509_st> share_x509(x509_st* cert) {
  if (cert == nullptr || X509_up_ref(cert) != 1) {
    return nullptr;
  }
  return std::shared_ptr<x509_st>(cert, x509_deleter{});
}

namespace detail {

std::string take_openssl_error() {
  std::string text;
  while (unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    if (!text.empty()) {
      text += "; ";
    }
    text += buf;
  }
  return text.empty() ? "unknown OpenSSL error" : text;
}

namespace {

bool valid_label(std::string_view label) {
  // RFC 1123 §2.1 host name labels: letters, digits, hyphens, not at either end.
  if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
    return false;
  }
  return std::all_of(label.begin(), label.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

}  // namespace

std::optional<normalized_host> normalize_host(std::string_view host, std::string* error) {
  auto fail = [&](const std::string& why) -> std::optional<normalized_host> {
    if (error != nullptr) {
      *error = "invalid host \"" + std::string(host.substr(0, 300)) + "\": " + why;
    }
    return std::nullopt;
  };
  std::string h(host);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
    h = h.substr(1, h.size() - 2);
  }
  std::transform(h.begin(), h.end(), h.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  // "acme.okta.com." is the same name; SNI never carries the root dot (RFC 6066 §3).
  if (!h.empty() && h.back() == '.') {
    h.pop_back();
  }
  if (h.empty()) {
    return fail("empty");
  }
  if (h.find('\0') != std::string::npos) {
    return fail("contains a NUL byte");
  }
  in_addr v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) {
    return normalized_host{h, true};
  }
  if (h.find(':') != std::string::npos) {
    in6_addr v6{};
    if (inet_pton(AF_INET6, h.c_str(), &v6) != 1) {
      return fail("not a valid IPv6 address");
    }
    char text[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &v6, text, sizeof text);
    return normalized_host{text, true};
  }
  if (h.size() > 253) {
    return fail("longer than 253 characters");
  }
  std::string_view rest = h;
  std::string_view last;
  while (true) {
    const auto dot = rest.find('.');
    last = rest.substr(0, dot);
    if (!valid_label(last)) {
      return fail("not a DNS name (labels are 1-63 of a-z 0-9 -, not starting or ending with -)");
    }
    if (dot == std::string_view::npos) {
      break;
    }
    rest.remove_prefix(dot + 1);
  }
  // An all-digit last label ("10.1", "127.1") is a shorthand IPv4 form that resolvers and
  // certificate checkers disagree on; no real DNS name ends that way.
  if (std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return fail("looks like an incomplete IPv4 address");
  }
  return normalized_host{h, false};
}

evp_pkey_ptr make_p256_key() {
  evp_pkey_ptr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) {
    throw std::runtime_error("cannot generate an EC P-256 key: " + take_openssl_error());
  }
  return key;
}

bool set_random_serial(X509* cert) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    return false;
  }
  bytes[0] &= 0x7f;  // positive in DER's two's complement
  bytes[0] |= 0x40;  // never zero, always the full 16 octets
  BIGNUM* bn = BN_bin2bn(bytes, sizeof bytes, nullptr);
  if (bn == nullptr) {
    return false;
  }
  ASN1_INTEGER* serial = BN_to_ASN1_INTEGER(bn, nullptr);
  BN_free(bn);
  if (serial == nullptr) {
    return false;
  }
  const int ok = X509_set_serialNumber(cert, serial);
  ASN1_INTEGER_free(serial);
  return ok == 1;
}

bool add_extension(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509_EXTENSION* ext = X509V3_EXT_nconf_nid(nullptr, ctx, nid, value.c_str());
  if (ext == nullptr) {
    return false;
  }
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1;
}

const EVP_MD* signing_digest(EVP_PKEY* key) {
  const int id = EVP_PKEY_get_id(key);
  if (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) {
    return nullptr;
  }
  return EVP_sha256();
}

}  // namespace detail
}  // namespace okta_sidecar::tls
