#include "okta_sidecar/tls/intercept_context.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "okta_sidecar/tls/certificate_authority.hpp"
#include "okta_sidecar/tls/leaf_cache.hpp"
#include "okta_sidecar/tls/upstream_context.hpp"
#include "tls_test_support.hpp"

namespace okta_sidecar::tls {
namespace {

using namespace testing;
namespace ssl = boost::asio::ssl;

// A client built from make_upstream_context (trusting the sidecar CA) against a server built
// from make_intercept_context, over an in-memory BIO pair.
class InterceptHandshakeTest : public ::testing::Test {
 protected:
  ssl_ptr client_for(std::string_view host, ssl::context& ctx) {
    ssl_ptr client(SSL_new(ctx.native_handle()));
    EXPECT_TRUE(prepare_upstream_ssl(client.get(), host));
    return client;
  }
  ssl_ptr server() { return ssl_ptr(SSL_new(server_ctx_.native_handle())); }

  static std::string alpn_of(SSL* ssl) {
    const unsigned char* proto = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl, &proto, &len);
    return std::string(reinterpret_cast<const char*>(proto), len);
  }

  static std::vector<std::string> peer_sans(SSL* ssl) {
    X509* peer = SSL_get0_peer_certificate(ssl);
    return peer ? subject_alt_names(peer) : std::vector<std::string>{};
  }

  temp_dir dir_;
  certificate_authority ca_ = certificate_authority::load_or_create(dir_.file("ca.crt"), dir_.file("ca.key"));
  leaf_cache cache_{ca_};
  std::set<std::string> allowed_{"acme.okta.com", "other.okta.com"};
  std::vector<std::string> asked_;
  ssl::context server_ctx_ = make_intercept_context(cache_, [this](std::string_view sni) {
    asked_.emplace_back(sni);
    return allowed_.count(std::string(sni)) > 0;
  });
  ssl::context client_ctx_ = make_upstream_context(dir_.file("ca.crt"), false);
};

TEST_F(InterceptHandshakeTest, SniLeafIsServedAndHttp11WinsOverH2) {
  auto client = client_for("acme.okta.com", client_ctx_);
  static const unsigned char h2_and_http11[] = "\x02h2\x08http/1.1";
  ASSERT_EQ(SSL_set_alpn_protos(client.get(), h2_and_http11, sizeof h2_and_http11 - 1), 0);
  auto srv = server();

  const auto result = handshake(client.get(), srv.get());
  ASSERT_TRUE(result.client_ok) << result.client_error;
  ASSERT_TRUE(result.server_ok) << result.server_error;
  EXPECT_EQ(SSL_get_verify_result(client.get()), X509_V_OK);
  EXPECT_EQ(alpn_of(client.get()), "http/1.1");
  EXPECT_EQ(alpn_of(srv.get()), "http/1.1");
  EXPECT_EQ(sni_of(srv.get()), "acme.okta.com");
  EXPECT_EQ(peer_sans(client.get()), std::vector<std::string>{"DNS:acme.okta.com"});
  EXPECT_EQ(asked_, std::vector<std::string>{"acme.okta.com"});
  EXPECT_EQ(cache_.minted_count(), 1u);
  EXPECT_GE(SSL_version(client.get()), TLS1_2_VERSION);
}

TEST_F(InterceptHandshakeTest, UpstreamContextOffersOnlyHttp11) {
  auto client = client_for("acme.okta.com", client_ctx_);
  auto srv = server();
  const auto result = handshake(client.get(), srv.get());
  ASSERT_TRUE(result.client_ok && result.server_ok) << result.client_error << result.server_error;
  EXPECT_EQ(alpn_of(srv.get()), "http/1.1");
}

TEST_F(InterceptHandshakeTest, H2OnlyClientGetsNoProtocolRatherThanH2) {
  auto client = client_for("acme.okta.com", client_ctx_);
  static const unsigned char h2_only[] = "\x02h2";
  ASSERT_EQ(SSL_set_alpn_protos(client.get(), h2_only, sizeof h2_only - 1), 0);
  auto srv = server();
  const auto result = handshake(client.get(), srv.get());
  ASSERT_TRUE(result.client_ok && result.server_ok) << result.client_error << result.server_error;
  EXPECT_EQ(alpn_of(client.get()), "");
}

TEST_F(InterceptHandshakeTest, MixedCaseSniIsLowercasedForPredicateAndLeaf) {
  auto client = client_for("acme.okta.com", client_ctx_);
  SSL_set_tlsext_host_name(client.get(), "ACME.Okta.com");
  auto srv = server();
  const auto result = handshake(client.get(), srv.get());
  ASSERT_TRUE(result.client_ok && result.server_ok) << result.client_error << result.server_error;
  EXPECT_EQ(asked_, std::vector<std::string>{"acme.okta.com"});
  EXPECT_EQ(sni_of(srv.get()), "acme.okta.com");
  EXPECT_EQ(SSL_get_verify_result(client.get()), X509_V_OK);
}

TEST_F(InterceptHandshakeTest, SniRefusedByPredicateAbortsWithUnrecognizedName) {
  auto client = client_for("evil.example.com", client_ctx_);
  auto srv = server();
  const auto result = handshake(client.get(), srv.get());
  EXPECT_FALSE(result.client_ok);
  EXPECT_FALSE(result.server_ok);
  EXPECT_NE(result.client_error.find("unrecognized name"), std::string::npos) << result.client_error;
  EXPECT_EQ(cache_.minted_count(), 0u);  // nothing minted for a refused name
}

TEST_F(InterceptHandshakeTest, InvalidSniAbortsTheHandshake) {
  allowed_.insert("bad_name.okta.com");
  auto client = client_for("acme.okta.com", client_ctx_);
  SSL_set_tlsext_host_name(client.get(), "bad_name.okta.com");
  auto srv = server();
  const auto result = handshake(client.get(), srv.get());
  EXPECT_FALSE(result.client_ok);
  EXPECT_NE(result.client_error.find("unrecognized name"), std::string::npos) << result.client_error;
}

TEST_F(InterceptHandshakeTest, ClientWithoutSniGetsTheConnectHostLeaf) {
  auto client = client_for("127.0.0.1", client_ctx_);  // IP: no SNI is sent
  auto srv = server();
  ASSERT_TRUE(use_leaf_for(srv.get(), cache_, "127.0.0.1"));
  const auto result = handshake(client.get(), srv.get());
  ASSERT_TRUE(result.client_ok && result.server_ok) << result.client_error << result.server_error;
  EXPECT_EQ(SSL_get_verify_result(client.get()), X509_V_OK);
  EXPECT_EQ(sni_of(srv.get()), "");
  EXPECT_TRUE(asked_.empty());
  EXPECT_EQ(peer_sans(client.get()), std::vector<std::string>{"IP:127.0.0.1"});
}

TEST_F(InterceptHandshakeTest, SniReplacesThePreinstalledConnectHostLeaf) {
  auto client = client_for("other.okta.com", client_ctx_);
  auto srv = server();
  ASSERT_TRUE(use_leaf_for(srv.get(), cache_, "acme.okta.com"));
  const auto result = handshake(client.get(), srv.get());
  ASSERT_TRUE(result.client_ok && result.server_ok) << result.client_error << result.server_error;
  EXPECT_EQ(peer_sans(client.get()), std::vector<std::string>{"DNS:other.okta.com"});
  EXPECT_EQ(SSL_get_verify_result(client.get()), X509_V_OK);
}

TEST_F(InterceptHandshakeTest, NoSniAndNoLeafFailsInsteadOfServingSomething) {
  auto client = client_for("127.0.0.1", client_ctx_);
  auto srv = server();
  const auto result = handshake(client.get(), srv.get());
  EXPECT_FALSE(result.server_ok);
  EXPECT_FALSE(result.client_ok);
  EXPECT_NE(result.server_error.find("no suitable signature algorithm"), std::string::npos)
      << result.server_error;
}

TEST_F(InterceptHandshakeTest, UseLeafForRefusesInvalidHost) {
  auto srv = server();
  EXPECT_FALSE(use_leaf_for(srv.get(), cache_, "not a host"));
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST_F(InterceptHandshakeTest, ClientVerifiesTheHostNameItAskedFor) {
  auto client = client_for("acme.okta.com", client_ctx_);
  SSL_set_tlsext_host_name(client.get(), "other.okta.com");  // server mints for other.okta.com
  auto srv = server();
  const auto result = handshake(client.get(), srv.get());
  EXPECT_FALSE(result.client_ok);
  EXPECT_EQ(SSL_get_verify_result(client.get()), X509_V_ERR_HOSTNAME_MISMATCH);
}

TEST_F(InterceptHandshakeTest, UntrustedCaFailsUnlessInsecure) {
  auto strict = make_upstream_context(std::nullopt, false);
  {
    auto client = client_for("acme.okta.com", strict);
    auto srv = server();
    const auto result = handshake(client.get(), srv.get());
    EXPECT_FALSE(result.client_ok);
    EXPECT_EQ(SSL_get_verify_result(client.get()), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
  }
  auto insecure = make_upstream_context(std::nullopt, true);
  {
    auto client = client_for("acme.okta.com", insecure);
    SSL_set_tlsext_host_name(client.get(), "other.okta.com");  // wrong name too
    auto srv = server();
    const auto result = handshake(client.get(), srv.get());
    EXPECT_TRUE(result.client_ok && result.server_ok) << result.client_error << result.server_error;
  }
}

// A client context outside our policy, to probe what the intercept side refuses.
ssl_ptr legacy_client(SSL_CTX*& ctx_out, int max_version, const char* ciphers) {
  ctx_out = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_security_level(ctx_out, 0);
  SSL_CTX_set_min_proto_version(ctx_out, TLS1_VERSION);
  SSL_CTX_set_max_proto_version(ctx_out, max_version);
  SSL_CTX_set_cipher_list(ctx_out, ciphers);
  ssl_ptr client(SSL_new(ctx_out));
  SSL_set_tlsext_host_name(client.get(), "acme.okta.com");
  return client;
}

struct refused_client_case {
  const char* name;
  int max_version;
  const char* ciphers;
  const char* server_says;
};

class InterceptPolicyTest : public InterceptHandshakeTest,
                            public ::testing::WithParamInterface<refused_client_case> {};

TEST_P(InterceptPolicyTest, ServerRefusesWeakClients) {
  SSL_CTX* ctx = nullptr;
  auto client = legacy_client(ctx, GetParam().max_version, GetParam().ciphers);
  auto srv = server();
  const auto result = handshake(client.get(), srv.get());
  EXPECT_FALSE(result.server_ok);
  EXPECT_FALSE(result.client_ok);
  EXPECT_NE(result.server_error.find(GetParam().server_says), std::string::npos) << result.server_error;
  client.reset();
  SSL_CTX_free(ctx);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, InterceptPolicyTest,
    ::testing::Values(refused_client_case{"Tls11", TLS1_1_VERSION, "ALL:@SECLEVEL=0", "unsupported protocol"},
                      refused_client_case{"Tls10", TLS1_VERSION, "ALL:@SECLEVEL=0", "unsupported protocol"},
                      refused_client_case{"Tls12CbcOnly", TLS1_2_VERSION,
                                          "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384",
                                          "no shared cipher"},
                      refused_client_case{"Tls12NoForwardSecrecy", TLS1_2_VERSION,
                                          "AES128-GCM-SHA256:AES256-GCM-SHA384", "no shared cipher"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(InterceptHandshakeTest, ModernTls12ClientIsAccepted) {
  SSL_CTX* ctx = nullptr;
  auto client = legacy_client(ctx, TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256");
  auto srv = server();
  const auto result = handshake(client.get(), srv.get());
  EXPECT_TRUE(result.client_ok && result.server_ok) << result.client_error << result.server_error;
  EXPECT_EQ(SSL_version(srv.get()), TLS1_2_VERSION);
  client.reset();
  SSL_CTX_free(ctx);
}

TEST_F(InterceptHandshakeTest, IntermediateCaIsSentAsChain) {
  auto root_key = make_key();
  auto root = make_cert(root_key.get(), cert_spec{.cn = "root"});
  auto inter_key = make_key();
  auto inter = make_cert(inter_key.get(), cert_spec{.cn = "intermediate"}, root.get(), root_key.get());
  write_file(dir_.file("root.crt"), cert_pem(root.get()), 0644);
  write_file(dir_.file("inter.crt"), cert_pem(inter.get()), 0644);
  write_file(dir_.file("inter.key"), key_pem(inter_key.get()), 0600);
  const auto inter_ca = certificate_authority::load_or_create(dir_.file("inter.crt"), dir_.file("inter.key"));
  leaf_cache cache(inter_ca);
  auto server_ctx = make_intercept_context(cache, nullptr);               // no predicate: every name
  auto client_ctx = make_upstream_context(dir_.file("root.crt"), false);  // trusts the root only

  auto client = client_for("acme.okta.com", client_ctx);
  ssl_ptr srv(SSL_new(server_ctx.native_handle()));
  const auto result = handshake(client.get(), srv.get());
  ASSERT_TRUE(result.client_ok && result.server_ok) << result.client_error << result.server_error;
  EXPECT_EQ(SSL_get_verify_result(client.get()), X509_V_OK);
}

}  // namespace
}  // namespace okta_sidecar::tls
