#include "okta_sidecar/tls/upstream_context.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include "openssl_util.hpp"
#include "tls_policy.hpp"

namespace okta_sidecar::tls {
namespace {

// The newest resumable session per upstream host. A new pooled connection resumes instead of
// paying a full handshake (one round trip and Okta's certificate chain less).
class session_store {
 public:
  ~session_store() {
    for (auto& [host, session] : sessions_) {
      SSL_SESSION_free(session);
    }
  }

  // Takes ownership of `session`.
  void put(const std::string& host, SSL_SESSION* session) {
    std::lock_guard lock(mutex_);
    if (sessions_.size() >= max_hosts && sessions_.find(host) == sessions_.end()) {
      SSL_SESSION_free(session);
      return;
    }
    auto [it, inserted] = sessions_.try_emplace(host, session);
    if (!inserted) {
      SSL_SESSION_free(it->second);
      it->second = session;
    }
  }

  // A TLS 1.3 ticket is used once (RFC 8446 §C.4: reuse lets observers link connections);
  // the resumed connection receives fresh tickets. TLS 1.2 sessions may be reused.
  bool resume(SSL* ssl, const std::string& host) {
    std::lock_guard lock(mutex_);
    auto it = sessions_.find(host);
    if (it == sessions_.end()) {
      return false;
    }
    if (SSL_SESSION_get_protocol_version(it->second) >= TLS1_3_VERSION) {
      const bool ok = SSL_set_session(ssl, it->second) == 1;
      SSL_SESSION_free(it->second);
      sessions_.erase(it);
      return ok;
    }
    // The connection gets its own copy: an unclean close would mark the shared one unusable.
    SSL_SESSION* copy = SSL_SESSION_dup(it->second);
    const bool ok = copy != nullptr && SSL_set_session(ssl, copy) == 1;
    SSL_SESSION_free(copy);
    return ok;
  }

 private:
  static constexpr std::size_t max_hosts = 1024;
  std::mutex mutex_;
  std::unordered_map<std::string, SSL_SESSION*> sessions_;
};

void free_session_store(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<session_store*>(ptr);
}

void free_host(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<std::string*>(ptr); }

int session_store_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, &free_session_store);
  return index;
}

int host_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, &free_host);
  return index;
}

// Called by OpenSSL for every new client session (after the handshake for TLS 1.2, on each
// NewSessionTicket for TLS 1.3). Returning 0 leaves OpenSSL's reference alone.
int on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* host = static_cast<std::string*>(SSL_get_ex_data(ssl, host_index()));
  auto* store = static_cast<session_store*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), session_store_index()));
  if (host == nullptr || store == nullptr || SSL_SESSION_is_resumable(session) != 1) {
    return 0;
  }
  // A copy: SSL_free on a connection closed without close_notify (an idle upstream socket
  // simply dropped) marks its own session object non-resumable, which would spoil ours.
  if (SSL_SESSION* copy = SSL_SESSION_dup(session)) {
    store->put(*host, copy);
  }
  return 0;
}

void add_trust_file(SSL_CTX* ctx, const std::string& file) {
  auto refuse = [&](const std::string& why) {
    throw std::runtime_error("upstream.trust_file " + file + ": " + why);
  };
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    refuse(std::string("cannot be read (") + std::strerror(errno) + ")");
  }
  if (S_ISDIR(st.st_mode)) {
    refuse("is a directory; it must be a file of PEM CA certificates");
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    refuse(std::string("cannot be read (") + std::strerror(errno) + ")");
  }
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    refuse("cannot be read");
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())),
                                                &BIO_free);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  ERR_clear_error();
  int count = 0;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    const int added = X509_STORE_add_cert(store, cert);
    X509_free(cert);
    if (added != 1) {
      refuse("a certificate cannot be added to the trust store (" + detail::take_openssl_error() + ")");
    }
    ++count;
  }
  // The loop ends at the first non-certificate: PEM_R_NO_START_LINE after at least one
  // certificate is the normal end of the bundle; anything else is a broken block.
  const unsigned long err = ERR_peek_last_error();
  if (count == 0) {
    ERR_clear_error();
    refuse(text.empty() ? "is empty; it must hold one or more PEM CA certificates"
                        : "contains no PEM certificate; it must hold one or more PEM CA "
                          "certificates (-----BEGIN CERTIFICATE-----)");
  }
  if (err != 0 && !(ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE)) {
    refuse("certificate #" + std::to_string(count + 1) + " is not valid PEM (" +
           detail::take_openssl_error() + ")");
  }
  ERR_clear_error();
}

}  // namespace

boost::asio::ssl::context make_upstream_context(const std::optional<std::string>& trust_file, bool insecure) {
  boost::asio::ssl::context context(boost::asio::ssl::context::tls_client);
  SSL_CTX* ctx = context.native_handle();
  detail::apply_protocol_policy(ctx);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  context.set_default_verify_paths();
  if (trust_file) {
    add_trust_file(ctx, *trust_file);
  }
  context.set_verify_mode(insecure ? boost::asio::ssl::verify_none : boost::asio::ssl::verify_peer);
  static constexpr unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn) != 0) {  // 0 means success here
    throw std::runtime_error("cannot set upstream ALPN: " + detail::take_openssl_error());
  }
  auto store = std::make_unique<session_store>();
  if (SSL_CTX_set_ex_data(ctx, session_store_index(), store.get()) != 1) {
    throw std::runtime_error("cannot attach the session store: " + detail::take_openssl_error());
  }
  static_cast<void>(store.release());  // the SSL_CTX frees it (free_session_store)
  // The built-in cache is server-oriented; a client keeps sessions itself (here, per host).
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, on_new_session);
  return context;
}

bool prepare_upstream_ssl(SSL* ssl, std::string_view host) {
  const auto normalized = detail::normalize_host(host, nullptr);
  if (!normalized) {
    return false;
  }
  const std::string& name = normalized->name;
  bool ok = true;
  if (normalized->is_ip) {
    // No SNI for addresses (RFC 6066 §3); check the certificate's IP SAN instead.
    ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) == 1;
  } else {
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = SSL_set_tlsext_host_name(ssl, name.c_str()) == 1 && SSL_set1_host(ssl, name.c_str()) == 1;
  }
  if (!ok) {
    ERR_clear_error();
    return false;
  }
  auto* previous = static_cast<std::string*>(SSL_get_ex_data(ssl, host_index()));
  auto* key = new std::string(name);
  if (SSL_set_ex_data(ssl, host_index(), key) != 1) {
    delete key;
    ERR_clear_error();
    return false;
  }
  delete previous;
  if (auto* store =
          static_cast<session_store*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), session_store_index()))) {
    store->resume(ssl, name);
  }
  ERR_clear_error();
  return true;
}

}  // namespace okta_sidecar::tls
