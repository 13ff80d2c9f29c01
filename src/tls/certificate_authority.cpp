#include "okta_sidecar/tls/certificate_authority.hpp"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <utility>

#include "openssl_util.hpp"
#include "secure_file.hpp"

namespace okta_sidecar::tls {
namespace {

using detail::file_exists;
using detail::read_private_file;
using detail::read_public_file;
using detail::take_openssl_error;
using detail::write_new_file;

constexpr long ca_validity_days = 3650;
// Back-dating absorbs clock skew between this host and the clients that will check the chain.
constexpr long backdate_seconds = 3600;

struct bio_deleter {
  void operator()(BIO* bio) const noexcept { BIO_free(bio); }
};
using bio_ptr = std::unique_ptr<BIO, bio_deleter>;

[[noreturn]] void refuse(const std::string& key, const std::string& file, const std::string& why) {
  throw std::runtime_error(key + " " + file + ": " + why);
}

// New directories on the way to a created CA file are made 0700 (issue 14: the state directory
// holds the private keys); the certificate itself is 0644 so it can be handed out.
void make_parent_directory(const std::string& key, const std::string& file) {
  const auto parent = std::filesystem::path(file).parent_path();
  if (!parent.empty()) detail::make_private_directory(key, parent.string());
}

// Never prompt on the terminal for a passphrase: the sidecar runs unattended.
int no_passphrase(char*, int, int, void*) { return -1; }

std::string to_pem(X509* cert) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    throw std::runtime_error("cannot encode the CA certificate: " + take_openssl_error());
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

std::string key_to_pem(EVP_PKEY* key) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    throw std::runtime_error("cannot encode the CA key: " + take_openssl_error());
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

// Names the CA after the machine so an operator who finds it in a trust store knows where it
// came from; a random suffix when the host name is unusable.
std::string ca_common_name() {
  constexpr std::string_view prefix = "okta-sidecar local CA ";
  constexpr std::size_t max_cn = 64;  // RFC 5280 ub-common-name
  char host[256] = {};
  std::string suffix;
  if (::gethostname(host, sizeof host - 1) == 0) {
    for (const char* p = host; *p != '\0'; ++p) {
      const char c = *p;
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '.' || c == '_') {
        suffix += c;
      }
    }
  }
  if (suffix.empty()) {
    unsigned char bytes[4];
    RAND_bytes(bytes, sizeof bytes);
    static const char hex[] = "0123456789abcdef";
    for (unsigned char b : bytes) {
      suffix += hex[b >> 4];
      suffix += hex[b & 15];
    }
  }
  return std::string(prefix) + suffix.substr(0, max_cn - prefix.size());
}

// The nameConstraints value (openssl.cnf syntax) of a generated CA: DNS names under the
// permitted domains, the permitted IP literals one by one, and every other address excluded,
// so a copy of the key cannot mint a certificate any client would accept for another site.
std::string name_constraints_value(const std::vector<std::string>& permitted) {
  std::string v = "critical";
  bool any_v4 = false, any_v6 = false;
  for (const auto& name : permitted) {
    std::string err;
    const auto n = detail::normalize_host(name, &err);
    if (!n) continue;
    if (!n->is_ip) {
      v += ",permitted;DNS:" + n->name;
    } else if (n->name.find(':') == std::string::npos) {
      v += ",permitted;IP:" + n->name + "/255.255.255.255";
      any_v4 = true;
    } else {
      v += ",permitted;IP:" + n->name + "/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
      any_v6 = true;
    }
  }
  if (!any_v4) v += ",excluded;IP:0.0.0.0/0.0.0.0";
  if (!any_v6) v += ",excluded;IP:::/::";
  return v;
}

x509_ptr build_ca_certificate(EVP_PKEY* key, const std::vector<std::string>& permitted) {
  x509_ptr cert(X509_new());
  auto fail = [](const char* what) -> x509_ptr {
    throw std::runtime_error(std::string("cannot create the CA certificate (") + what +
                             "): " + take_openssl_error());
  };
  if (!cert) {
    return fail("X509_new");
  }
  X509* x = cert.get();
  if (X509_set_version(x, X509_VERSION_3) != 1 || !detail::set_random_serial(x)) {
    return fail("serial");
  }
  X509_NAME* name = X509_get_subject_name(x);
  const std::string cn = ca_common_name();
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0) != 1 ||
      X509_set_issuer_name(x, name) != 1) {
    return fail("subject");
  }
  if (X509_gmtime_adj(X509_getm_notBefore(x), -backdate_seconds) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(x), ca_validity_days, 0, nullptr) == nullptr) {
    return fail("validity");
  }
  if (X509_set_pubkey(x, key) != 1) {
    return fail("public key");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  // pathlen:0 — this CA only ever signs leaves; a stolen copy cannot mint sub-CAs.
  if (!detail::add_extension(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
      !detail::add_extension(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !detail::add_extension(x, &ctx, NID_subject_key_identifier, "hash") ||
      (!permitted.empty() &&
       !detail::add_extension(x, &ctx, NID_name_constraints, name_constraints_value(permitted)))) {
    return fail("extensions");
  }
  if (X509_sign(x, key, detail::signing_digest(key)) <= 0) {
    return fail("signature");
  }
  return cert;
}

}  // namespace

certificate_authority::certificate_authority(x509_ptr cert, evp_pkey_ptr key, std::string pem, bool created)
    : cert_(std::move(cert)), key_(std::move(key)), cert_pem_(std::move(pem)), created_(created) {}

certificate_authority certificate_authority::load_or_create(const std::string& cert_file,
                                                            const std::string& key_file,
                                                            const std::vector<std::string>& permitted) {
  const std::string cert_key = "ca.cert_file";
  const std::string key_key = "ca.key_file";
  const bool have_cert = file_exists(cert_key, cert_file);
  const bool have_key = file_exists(key_key, key_file);

  if (!have_cert && !have_key) {
    evp_pkey_ptr key = detail::make_p256_key();
    x509_ptr cert = build_ca_certificate(key.get(), permitted);
    std::string pem = to_pem(cert.get());
    make_parent_directory(key_key, key_file);
    make_parent_directory(cert_key, cert_file);
    write_new_file(key_key, key_file, key_to_pem(key.get()), 0600);
    try {
      write_new_file(cert_key, cert_file, pem, 0644);
    } catch (...) {
      // Leaving the key alone would make every later start refuse "only one file exists".
      ::unlink(key_file.c_str());
      throw;
    }
    return certificate_authority(std::move(cert), std::move(key), std::move(pem), true);
  }
  if (!have_key) {
    refuse(cert_key, cert_file,
           "exists but the CA key " + key_file +
               " does not; provide both files (e.g. from the same Secret), or remove " + cert_file +
               " to have a new CA created");
  }
  if (!have_cert) {
    refuse(key_key, key_file,
           "exists but the CA certificate " + cert_file + " does not; provide both files, or remove " +
               key_file + " to have a new CA created");
  }

  ERR_clear_error();
  const std::string key_pem = read_private_file(key_key, key_file);
  bio_ptr key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  evp_pkey_ptr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, no_passphrase, nullptr));
  if (!key) {
    refuse(key_key, key_file,
           "is not an unencrypted PEM private key (" + take_openssl_error() +
               "); regenerate it or remove both CA files to have a new CA created");
  }

  const std::string cert_text = read_public_file(cert_key, cert_file);
  bio_ptr cert_bio(BIO_new_mem_buf(cert_text.data(), static_cast<int>(cert_text.size())));
  x509_ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, no_passphrase, nullptr));
  if (!cert) {
    refuse(cert_key, cert_file,
           "is not a PEM certificate (" + take_openssl_error() +
               "); replace it or remove both CA files to have a new CA created");
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    refuse(key_key, key_file,
           "does not match the certificate in " + cert_file +
               "; provide the key that belongs to that certificate");
  }
  const uint32_t flags = X509_get_extension_flags(cert.get());
  if ((flags & EXFLAG_CA) == 0) {
    refuse(cert_key, cert_file,
           "is not a CA certificate (basicConstraints CA:TRUE missing); use a CA "
           "certificate, or remove both CA files to have one created");
  }
  if ((X509_get_key_usage(cert.get()) & KU_KEY_CERT_SIGN) == 0) {
    refuse(cert_key, cert_file,
           "may not sign certificates (keyUsage lacks keyCertSign); use a CA certificate "
           "that allows it");
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) <= 0) {
    refuse(cert_key, cert_file,
           "has expired; replace both CA files (or remove them to have a new CA created) and "
           "have clients trust the new certificate");
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) >= 0) {
    refuse(cert_key, cert_file, "is not valid yet; check this machine's clock");
  }
  std::string pem = to_pem(cert.get());
  return certificate_authority(std::move(cert), std::move(key), std::move(pem), false);
}

std::optional<std::string> certificate_authority::host_outside_constraints(
    const std::vector<std::string>& patterns) const {
  std::unique_ptr<NAME_CONSTRAINTS, decltype(&NAME_CONSTRAINTS_free)> nc(
      static_cast<NAME_CONSTRAINTS*>(X509_get_ext_d2i(cert_.get(), NID_name_constraints, nullptr, nullptr)),
      &NAME_CONSTRAINTS_free);
  if (!nc) {
    ERR_clear_error();
    return std::nullopt;
  }
  for (const auto& pattern : patterns) {
    // Strip ":port" ("[v6]:port" keeps its address); a wildcard is judged by a name under it.
    std::string host = pattern;
    if (!host.empty() && host.front() == '[') {
      host = host.substr(1, host.find(']') - 1);
    } else if (std::count(host.begin(), host.end(), ':') == 1) {
      host = host.substr(0, host.find(':'));
    }
    if (host.starts_with("*.")) host = "a" + host.substr(1);
    std::string err;
    const auto n = detail::normalize_host(host, &err);
    if (!n) continue;  // the config validator reports malformed entries
    x509_ptr probe(X509_new());
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, nullptr, probe.get(), nullptr, nullptr, 0);
    if (!probe || !detail::add_extension(probe.get(), &ctx, NID_subject_alt_name,
                                         std::string(n->is_ip ? "IP:" : "DNS:") + n->name)) {
      ERR_clear_error();
      return pattern;
    }
    // OpenSSL reads the names from the extension cache, which a complete (signed) certificate
    // fills: sign the probe with our own key; it never leaves this function.
    if (X509_set_version(probe.get(), X509_VERSION_3) != 1 || X509_set_pubkey(probe.get(), key_.get()) != 1 ||
        X509_sign(probe.get(), key_.get(), detail::signing_digest(key_.get())) <= 0) {
      ERR_clear_error();
      return pattern;
    }
    X509_get_extension_flags(probe.get());
    if (NAME_CONSTRAINTS_check(probe.get(), nc.get()) != X509_V_OK) {
      ERR_clear_error();
      return pattern;
    }
  }
  return std::nullopt;
}

std::string certificate_authority::subject() const {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert_.get()), 0, XN_FLAG_RFC2253) < 0) {
    ERR_clear_error();
    return {};
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

}  // namespace okta_sidecar::tls
