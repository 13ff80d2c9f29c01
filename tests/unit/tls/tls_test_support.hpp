#pragma once
// Test-only helpers for the tls unit tests: temp directories, hand-made certificates, an
// in-memory handshake over a BIO pair, and a fake clock; and for the loopback TLS tests of net
// and upstream, a CA with a "localhost" leaf and the two contexts (localhost_pki).
#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/tls/openssl_ptr.hpp"

namespace okta_sidecar::tls::testing {

// A fresh directory under /tmp, removed with everything in it at scope exit.
class temp_dir {
 public:
  temp_dir() {
    char pattern[] = "/tmp/okta-tls-test-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    path_ = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void write_file(const std::string& path, const std::string& text, mode_t mode = 0600) {
  { std::ofstream(path, std::ios::binary | std::ios::trunc) << text; }
  ::chmod(path.c_str(), mode);
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline mode_t file_mode(const std::string& path) {
  struct stat st {};
  ::stat(path.c_str(), &st);
  return st.st_mode & 07777;
}

inline evp_pkey_ptr make_key(const char* type = "EC") {
  if (std::string(type) == "RSA") {
    return evp_pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)));
  }
  return evp_pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
}

struct cert_spec {
  std::string cn = "test";
  bool ca = true;
  const char* key_usage = "critical,keyCertSign,cRLSign";  // nullptr = no keyUsage
  long not_before_offset = -3600;                          // seconds from now
  long not_after_offset = 86400L * 365;
};

// A certificate for `key` signed by `issuer_key` (self-signed when issuer is null).
inline x509_ptr make_cert(EVP_PKEY* key, const cert_spec& spec, X509* issuer = nullptr,
                          EVP_PKEY* issuer_key = nullptr) {
  x509_ptr cert(X509_new());
  X509* x = cert.get();
  X509_set_version(x, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x), static_cast<long>(std::time(nullptr) & 0xffffff));
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(x));
  X509_gmtime_adj(X509_getm_notBefore(x), spec.not_before_offset);
  X509_gmtime_adj(X509_getm_notAfter(x), spec.not_after_offset);
  X509_set_pubkey(x, key);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer ? issuer : x, x, nullptr, nullptr, 0);
  auto add = [&](int nid, const char* value) {
    X509_EXTENSION* ext = X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value);
    if (ext == nullptr) {
      throw std::runtime_error("bad test extension");
    }
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  };
  add(NID_basic_constraints, spec.ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  if (spec.key_usage != nullptr) {
    add(NID_key_usage, spec.key_usage);
  }
  add(NID_subject_key_identifier, "hash");
  X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256());
  return cert;
}

inline std::string cert_pem(X509* cert) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

inline std::string key_pem(EVP_PKEY* key, const char* passphrase = nullptr) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (passphrase != nullptr) {
    PEM_write_bio_PrivateKey(bio.get(), key, EVP_aes_256_cbc(),
                             reinterpret_cast<const unsigned char*>(passphrase),
                             static_cast<int>(std::strlen(passphrase)), nullptr, nullptr);
  } else {
    PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

inline x509_ptr parse_cert(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())),
                                                &BIO_free);
  return x509_ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

// The SAN entries as "DNS:name" / "IP:address" strings.
inline std::vector<std::string> subject_alt_names(X509* cert) {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_DNS) {
      out.push_back("DNS:" +
                    std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.dNSName)),
                                ASN1_STRING_length(name->d.dNSName)));
    } else if (name->type == GEN_IPADD) {
      const unsigned char* bytes = ASN1_STRING_get0_data(name->d.iPAddress);
      char text[64] = {};
      inet_ntop(ASN1_STRING_length(name->d.iPAddress) == 4 ? AF_INET : AF_INET6, bytes, text, sizeof text);
      out.push_back(std::string("IP:") + text);
    } else {
      out.push_back("other");
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

inline bool extension_critical(X509* cert, int nid) {
  const int pos = X509_get_ext_by_NID(cert, nid, -1);
  return pos >= 0 && X509_EXTENSION_get_critical(X509_get_ext(cert, pos)) == 1;
}

inline std::time_t asn1_to_time(const ASN1_TIME* t) {
  std::tm tm{};
  ASN1_TIME_to_tm(t, &tm);
  return timegm(&tm);
}

// Chain verification as a TLS client does it: trust `ca`, purpose serverAuth, host or IP check.
inline int verify_leaf(X509* leaf, X509* ca, const std::string& host, bool is_ip, std::time_t at = 0) {
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), &X509_STORE_free);
  X509_STORE_add_cert(store.get(), ca);
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(),
                                                                      &X509_STORE_CTX_free);
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  if (is_ip) {
    X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
  } else {
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  }
  if (at != 0) {
    X509_VERIFY_PARAM_set_time(param, at);
  }
  if (X509_verify_cert(ctx.get()) == 1) {
    return X509_V_OK;
  }
  return X509_STORE_CTX_get_error(ctx.get());
}

class fake_clock final : public clock_source {
 public:
  explicit fake_clock(wall_time start) : wall_(start) {}
  time_point now() const override { return time_point{} + (wall_ - wall_time{}); }
  wall_time wall_now() const override { return wall_; }
  void advance(wall_clock::duration d) { wall_ += d; }

 private:
  wall_time wall_;
};

struct handshake_result {
  bool client_ok = false;
  bool server_ok = false;
  std::string client_error;
  std::string server_error;
};

// Drives both ends of a handshake through an in-memory BIO pair, no sockets.
inline handshake_result handshake(SSL* client, SSL* server) {
  BIO* client_bio = nullptr;
  BIO* server_bio = nullptr;
  BIO_new_bio_pair(&client_bio, 0, &server_bio, 0);
  SSL_set_bio(client, client_bio, client_bio);
  SSL_set_bio(server, server_bio, server_bio);
  SSL_set_connect_state(client);
  SSL_set_accept_state(server);
  handshake_result result;
  bool client_failed = false;
  bool server_failed = false;
  auto step = [](SSL* ssl, bool& ok, bool& failed, std::string& error) {
    if (ok || failed) {
      return;
    }
    const int rc = SSL_do_handshake(ssl);
    if (rc == 1) {
      ok = true;
      return;
    }
    const int err = SSL_get_error(ssl, rc);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      failed = true;
      char buf[256];
      ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
      error = buf;
      ERR_clear_error();
    }
  };
  for (int i = 0; i < 50; ++i) {
    step(client, result.client_ok, client_failed, result.client_error);
    step(server, result.server_ok, server_failed, result.server_error);
    if ((result.client_ok || client_failed) && (result.server_ok || server_failed)) {
      break;
    }
  }
  if (result.client_ok && result.server_ok) {
    // Let the client read what followed the handshake (TLS 1.3 NewSessionTicket messages).
    char byte;
    SSL_read(client, &byte, 1);
    ERR_clear_error();
  }
  return result;
}

struct ssl_deleter {
  void operator()(SSL* ssl) const noexcept { SSL_free(ssl); }
};
using ssl_ptr = std::unique_ptr<SSL, ssl_deleter>;

struct ctx_deleter {
  void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};
using ctx_ptr = std::unique_ptr<SSL_CTX, ctx_deleter>;

// A test CA, a server context with a leaf for "localhost" signed by it, and a client context
// trusting only that CA.
struct localhost_pki {
  tls::evp_pkey_ptr ca_key = make_key();
  tls::x509_ptr ca = make_cert(ca_key.get(), cert_spec{});
  tls::evp_pkey_ptr leaf_key = make_key();
  tls::x509_ptr leaf;
  ctx_ptr server{SSL_CTX_new(TLS_server_method())};
  ctx_ptr client{SSL_CTX_new(TLS_client_method())};

  localhost_pki() {
    cert_spec spec;
    spec.cn = "localhost";
    spec.ca = false;
    spec.key_usage = "critical,digitalSignature";
    leaf = make_cert(leaf_key.get(), spec, ca.get(), ca_key.get());
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, ca.get(), leaf.get(), nullptr, nullptr, 0);
    X509_EXTENSION* san = X509V3_EXT_nconf_nid(nullptr, &v3, NID_subject_alt_name, "DNS:localhost");
    X509_add_ext(leaf.get(), san, -1);
    X509_EXTENSION_free(san);
    X509_sign(leaf.get(), ca_key.get(), EVP_sha256());
    SSL_CTX_use_certificate(server.get(), leaf.get());
    SSL_CTX_use_PrivateKey(server.get(), leaf_key.get());
    X509_STORE_add_cert(SSL_CTX_get_cert_store(client.get()), ca.get());
    SSL_CTX_set_verify(client.get(), SSL_VERIFY_PEER, nullptr);
  }
};

}  // namespace okta_sidecar::tls::testing
