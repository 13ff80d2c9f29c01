// okta-ssl-state: what OpenSSL itself keeps per idle server-side TLS connection, the floor under
// the sidecar's "idle kept-alive TLS client connection" figure. It opens N TLS 1.3 connections
// over socket pairs, with the modes net::stream sets (buffers released while idle, read-ahead),
// does one request and response on each, frees the client ends and reports the heap the server
// ends still hold (mallinfo2), per connection, as one JSON line.
//
//   okta-ssl-state [--connections N]
#include <malloc.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

std::size_t heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "okta-ssl-state: %s\n", what);
  std::exit(1);
}

// A throwaway P-256 key and self-signed certificate, so the probe needs no files.
void install_identity(SSL_CTX* ctx) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  if (key == nullptr || cert == nullptr) fail("cannot make a key");
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("probe.invalid"), -1, -1, 0);
  X509_set_issuer_name(cert, X509_get_subject_name(cert));
  X509_set_pubkey(cert, key);
  if (X509_sign(cert, key, EVP_sha256()) == 0) fail("cannot sign the certificate");
  if (SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1)
    fail("cannot install the certificate");
  X509_free(cert);
  EVP_PKEY_free(key);
}

// Drives both ends' handshakes until both are done (non-blocking socket pair).
bool handshake(SSL* server, SSL* client) {
  for (int i = 0; i < 50; ++i) {
    const int c = SSL_do_handshake(client);
    const int s = SSL_do_handshake(server);
    if (c == 1 && s == 1) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  int n = 2000;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--connections") == 0 && i + 1 < argc) {
      n = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: okta-ssl-state [--connections N]\n");
      return 2;
    }
  }
  if (n < 1) fail("--connections must be positive");
  // Two descriptors per connection: take what the hard limit allows.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  SSL_CTX* sctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  if (sctx == nullptr || cctx == nullptr) fail("cannot make the contexts");
  install_identity(sctx);
  SSL_CTX_set_min_proto_version(sctx, TLS1_3_VERSION);

  std::vector<SSL*> servers;
  std::vector<SSL*> clients;
  std::vector<int> fds;
  servers.reserve(static_cast<std::size_t>(n));
  clients.reserve(static_cast<std::size_t>(n));
  fds.reserve(static_cast<std::size_t>(n));
  const std::size_t before = heap_in_use();
  for (int i = 0; i < n; ++i) {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp) != 0) fail("socketpair failed (ulimit -n?)");
    SSL* s = SSL_new(sctx);
    SSL* c = SSL_new(cctx);
    if (s == nullptr || c == nullptr) fail("SSL_new failed");
    SSL_set_fd(s, sp[0]);
    SSL_set_fd(c, sp[1]);
    SSL_set_mode(
        s, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_read_ahead(s, 1);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    if (!handshake(s, c)) fail("handshake failed");
    static constexpr char request[] = "GET / HTTP/1.1\r\nHost: probe.invalid\r\n\r\n";
    static constexpr char response[] = "HTTP/1.1 204 No Content\r\n\r\n";
    char buf[4096];
    std::size_t got = 0;
    if (SSL_write(c, request, sizeof request - 1) <= 0 || SSL_read_ex(s, buf, sizeof buf, &got) != 1 ||
        SSL_write(s, response, sizeof response - 1) <= 0)
      fail("request/response failed");
    // The client reads the response (and the session tickets before it).
    for (int k = 0; k < 4 && SSL_read_ex(c, buf, sizeof buf, &got) != 1; ++k) {
    }
    servers.push_back(s);
    clients.push_back(c);
    fds.push_back(sp[1]);
  }
  for (SSL* c : clients) SSL_free(c);
  for (int fd : fds) close(fd);
  malloc_trim(0);
  const std::size_t after = heap_in_use();
  std::printf(
      "{\"connections\":%d,\"server_ssl_bytes_per_connection\":%zu,\"protocol\":\"%s\",\"cipher\":\"%s\","
      "\"openssl\":\"%s\"}\n",
      n, (after - before) / static_cast<std::size_t>(n), SSL_get_version(servers[0]),
      SSL_CIPHER_get_name(SSL_get_current_cipher(servers[0])), OpenSSL_version(OPENSSL_VERSION));
  for (SSL* s : servers) SSL_free(s);
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
  return 0;
}
