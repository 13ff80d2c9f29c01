#include "okta_sidecar/tls/upstream_context.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "okta_sidecar/tls/certificate_authority.hpp"
#include "okta_sidecar/tls/intercept_context.hpp"
#include "okta_sidecar/tls/leaf_cache.hpp"
#include "tls_test_support.hpp"

namespace okta_sidecar::tls {
namespace {

using namespace testing;
namespace ssl = boost::asio::ssl;

struct trust_file_case {
  const char* name;
  std::function<std::string(const temp_dir&)> make;  // returns the path to pass
  const char* says;
};

class TrustFileTest : public ::testing::TestWithParam<trust_file_case> {};

TEST_P(TrustFileTest, BadTrustFileIsRefusedNamingIt) {
  temp_dir dir;
  const std::string path = GetParam().make(dir);
  try {
    make_upstream_context(path, false);
    FAIL() << "accepted";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind("upstream.trust_file " + path + ": ", 0), 0u) << message;
    EXPECT_NE(message.find(GetParam().says), std::string::npos) << message;
  }
  EXPECT_EQ(ERR_peek_error(), 0u);
}

std::string a_ca_pem() {
  auto key = make_key();
  return cert_pem(make_cert(key.get(), cert_spec{}).get());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TrustFileTest,
    ::testing::Values(trust_file_case{"Missing", [](const temp_dir& d) { return d.file("absent.pem"); },
                                      "cannot be read (No such file or directory)"},
                      trust_file_case{"Directory", [](const temp_dir& d) { return d.path(); },
                                      "is a directory"},
                      trust_file_case{"Empty",
                                      [](const temp_dir& d) {
                                        write_file(d.file("empty.pem"), "", 0644);
                                        return d.file("empty.pem");
                                      },
                                      "is empty"},
                      trust_file_case{"NotPem",
                                      [](const temp_dir& d) {
                                        write_file(d.file("junk.pem"), "hello\n", 0644);
                                        return d.file("junk.pem");
                                      },
                                      "contains no PEM certificate"},
                      trust_file_case{"OnlyAKey",
                                      [](const temp_dir& d) {
                                        write_file(d.file("key.pem"), key_pem(make_key().get()), 0644);
                                        return d.file("key.pem");
                                      },
                                      "contains no PEM certificate"},
                      trust_file_case{"BrokenSecondCertificate",
                                      [](const temp_dir& d) {
                                        write_file(d.file("bundle.pem"),
                                                   a_ca_pem() +
                                                       "-----BEGIN CERTIFICATE-----\nAAAA\n-----END "
                                                       "CERTIFICATE-----\n",
                                                   0644);
                                        return d.file("bundle.pem");
                                      },
                                      "certificate #2 is not valid PEM"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(UpstreamContextTest, BundleWithSeveralCertificatesAndCommentsLoads) {
  temp_dir dir;
  write_file(dir.file("bundle.pem"), "# private CAs\n" + a_ca_pem() + "\n" + a_ca_pem(), 0644);
  auto count = [](ssl::context& ctx) {
    return sk_X509_OBJECT_num(X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx.native_handle())));
  };
  auto system_only = make_upstream_context(std::nullopt, false);
  auto with_bundle = make_upstream_context(dir.file("bundle.pem"), false);
  // Both extra anchors, on top of whatever the system store holds.
  EXPECT_EQ(count(with_bundle), count(system_only) + 2);
}

TEST(UpstreamContextTest, PolicyIsTls12PlusVerifyPeerAndNoCompression) {
  auto ctx = make_upstream_context(std::nullopt, false);
  SSL_CTX* native = ctx.native_handle();
  EXPECT_EQ(SSL_CTX_get_min_proto_version(native), TLS1_2_VERSION);
  EXPECT_EQ(SSL_CTX_get_verify_mode(native), SSL_VERIFY_PEER);
  EXPECT_NE(SSL_CTX_get_options(native) & SSL_OP_NO_COMPRESSION, 0u);
  auto insecure = make_upstream_context(std::nullopt, true);
  EXPECT_EQ(SSL_CTX_get_verify_mode(insecure.native_handle()), SSL_VERIFY_NONE);
}

TEST(UpstreamContextTest, PrepareSetsSniAndHostCheckForDnsNames) {
  auto ctx = make_upstream_context(std::nullopt, false);
  ssl_ptr s(SSL_new(ctx.native_handle()));
  ASSERT_TRUE(prepare_upstream_ssl(s.get(), "Acme.Okta.com"));
  EXPECT_STREQ(SSL_get_servername(s.get(), TLSEXT_NAMETYPE_host_name), "acme.okta.com");
  EXPECT_STREQ(SSL_get0_peername(s.get()), nullptr);  // set only once verified
  EXPECT_STREQ(X509_VERIFY_PARAM_get0_host(SSL_get0_param(s.get()), 0), "acme.okta.com");
}

TEST(UpstreamContextTest, PrepareSendsNoSniForIpLiterals) {
  auto ctx = make_upstream_context(std::nullopt, false);
  for (const char* host : {"127.0.0.1", "[::1]"}) {
    SCOPED_TRACE(host);
    ssl_ptr s(SSL_new(ctx.native_handle()));
    ASSERT_TRUE(prepare_upstream_ssl(s.get(), host));
    EXPECT_EQ(SSL_get_servername(s.get(), TLSEXT_NAMETYPE_host_name), nullptr);
    EXPECT_EQ(X509_VERIFY_PARAM_get0_host(SSL_get0_param(s.get()), 0), nullptr);
  }
}

TEST(UpstreamContextTest, PrepareRefusesInvalidHosts) {
  auto ctx = make_upstream_context(std::nullopt, false);
  for (const char* host : {"", "bad host", "*.okta.com", "acme.okta.com:443"}) {
    SCOPED_TRACE(host);
    ssl_ptr s(SSL_new(ctx.native_handle()));
    EXPECT_FALSE(prepare_upstream_ssl(s.get(), host));
    EXPECT_EQ(ERR_peek_error(), 0u);
  }
}

// Handshakes against an intercept-context server stand in for Okta here.
class UpstreamResumptionTest : public ::testing::Test {
 protected:
  bool connect(std::string_view host, int max_version = 0) {
    ssl_ptr client(SSL_new(client_ctx_.native_handle()));
    if (max_version != 0) {
      SSL_set_max_proto_version(client.get(), max_version);
    }
    EXPECT_TRUE(prepare_upstream_ssl(client.get(), host));
    ssl_ptr server(SSL_new(server_ctx_.native_handle()));
    const auto result = handshake(client.get(), server.get());
    EXPECT_TRUE(result.client_ok && result.server_ok) << result.client_error << result.server_error;
    EXPECT_EQ(SSL_get_verify_result(client.get()), X509_V_OK);
    return SSL_session_reused(client.get()) == 1;
  }

  temp_dir dir_;
  certificate_authority ca_ = certificate_authority::load_or_create(dir_.file("ca.crt"), dir_.file("ca.key"));
  leaf_cache cache_{ca_};
  ssl::context server_ctx_ = make_intercept_context(cache_, nullptr);
  ssl::context client_ctx_ = make_upstream_context(dir_.file("ca.crt"), false);
};

TEST_F(UpstreamResumptionTest, Tls13SecondConnectionResumesAndTicketsAreNotReused) {
  EXPECT_FALSE(connect("acme.okta.com"));
  EXPECT_TRUE(connect("acme.okta.com"));
  EXPECT_TRUE(connect("acme.okta.com"));  // the resumed connection left a fresh ticket
}

TEST_F(UpstreamResumptionTest, Tls12SessionResumes) {
  EXPECT_FALSE(connect("acme.okta.com", TLS1_2_VERSION));
  EXPECT_TRUE(connect("acme.okta.com", TLS1_2_VERSION));
  EXPECT_TRUE(connect("acme.okta.com", TLS1_2_VERSION));
}

TEST_F(UpstreamResumptionTest, SessionsAreKeptPerHost) {
  EXPECT_FALSE(connect("acme.okta.com"));
  EXPECT_FALSE(connect("other.okta.com"));
  EXPECT_TRUE(connect("acme.okta.com"));
  EXPECT_TRUE(connect("other.okta.com"));
}

}  // namespace
}  // namespace okta_sidecar::tls
