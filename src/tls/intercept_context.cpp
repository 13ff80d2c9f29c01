#include "okta_sidecar/tls/intercept_context.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <utility>

#include "okta_sidecar/tls/leaf_cache.hpp"
#include "openssl_util.hpp"
#include "tls_policy.hpp"

namespace okta_sidecar::tls {
namespace {

// What the SNI callback needs; owned by the SSL_CTX through ex_data, so it lives exactly as
// long as the context (boost::asio::ssl::context is movable, the SSL_CTX does not move).
struct intercept_state {
  leaf_cache* cache;
  std::function<bool(std::string_view)> sni_allowed;
};

void free_intercept_state(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<intercept_state*>(ptr);
}

int intercept_state_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, &free_intercept_state);
  return index;
}

bool install_leaf(SSL* ssl, leaf_cache& cache, std::string_view host) {
  const auto leaf = cache.get(host);
  if (!leaf || SSL_use_certificate(ssl, leaf.get()) != 1) {
    ERR_clear_error();
    return false;
  }
  // Replace, not append: use_leaf_for and then the SNI callback may both install a leaf.
  SSL_clear_chain_certs(ssl);
  if (X509* chain = cache.chain_certificate(); chain != nullptr && SSL_add1_chain_cert(ssl, chain) != 1) {
    ERR_clear_error();
    return false;
  }
  return true;
}

std::string lowercase(std::string_view in) {
  std::string out(in);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

int on_server_name(SSL* ssl, int* alert, void* arg) {
  auto* state = static_cast<intercept_state*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) {
    return SSL_TLSEXT_ERR_OK;  // no SNI: keep what use_leaf_for installed
  }
  const std::string host = lowercase(name);
  // unrecognized_name (RFC 6066 §3) tells the client plainly that this name is not served here.
  if (!state->sni_allowed(host) || !install_leaf(ssl, *state->cache, host)) {
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

// Picks "http/1.1" from the client's list and nothing else: a client offering h2 must not get
// it, since both legs of the tunnel are HTTP/1.1 (docs/architecture.md). Without http/1.1 in the list no
// protocol is selected and the client falls back to its default, which is HTTP/1.x for every
// client that also speaks it. Parsed by hand rather than with SSL_select_next_proto
// (CVE-2024-5535).
int on_alpn_select(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                   unsigned int inlen, void*) {
  unsigned int i = 0;
  while (i < inlen) {
    const unsigned int len = in[i];
    if (len == 0 || i + 1 + len > inlen) {
      break;
    }
    const std::string_view proto(reinterpret_cast<const char*>(in + i + 1), len);
    if (proto == detail::alpn_http11) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

boost::asio::ssl::context make_intercept_context(leaf_cache& cache,
                                                 std::function<bool(std::string_view sni_host)> sni_allowed) {
  boost::asio::ssl::context context(boost::asio::ssl::context::tls_server);
  SSL_CTX* ctx = context.native_handle();
  detail::apply_protocol_policy(ctx);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_use_PrivateKey(ctx, cache.leaf_key()) != 1) {
    throw std::runtime_error("cannot install the leaf key: " + detail::take_openssl_error());
  }
  auto state = std::make_unique<intercept_state>(
      intercept_state{&cache, sni_allowed ? std::move(sni_allowed) : [](std::string_view) { return true; }});
  if (SSL_CTX_set_ex_data(ctx, intercept_state_index(), state.get()) != 1) {
    throw std::runtime_error("cannot attach the SNI state: " + detail::take_openssl_error());
  }
  SSL_CTX_set_tlsext_servername_callback(ctx, on_server_name);
  SSL_CTX_set_tlsext_servername_arg(ctx, state.release());
  SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select, nullptr);
  return context;
}

bool use_leaf_for(SSL* ssl, leaf_cache& cache, std::string_view host) {
  return install_leaf(ssl, cache, host);
}

std::string sni_of(SSL* ssl) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  return name == nullptr ? std::string() : lowercase(name);
}

}  // namespace okta_sidecar::tls
