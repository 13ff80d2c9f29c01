#include "okta_sidecar/tls/certificate_authority.hpp"

#include <gtest/gtest.h>
#include <openssl/hmac.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>

#include "../../../src/tls/secure_file.hpp"
#include "okta_sidecar/tls/fingerprint_key.hpp"
#include "tls_test_support.hpp"

namespace okta_sidecar::tls {
namespace {

using namespace testing;

class CertificateAuthorityTest : public ::testing::Test {
 protected:
  temp_dir dir_;
  std::string cert_ = dir_.file("state/nested/ca.crt");
  std::string key_ = dir_.file("state/nested/ca.key");
};

TEST_F(CertificateAuthorityTest, CreatesCaWithExpectedExtensions) {
  const auto ca = certificate_authority::load_or_create(cert_, key_);
  EXPECT_TRUE(ca.created());
  X509* x = ca.certificate();
  ASSERT_NE(x, nullptr);

  EXPECT_NE(X509_get_extension_flags(x) & EXFLAG_CA, 0u);
  EXPECT_TRUE(extension_critical(x, NID_basic_constraints));
  EXPECT_EQ(X509_get_pathlen(x), 0);
  EXPECT_EQ(X509_get_key_usage(x), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_TRUE(extension_critical(x, NID_key_usage));
  EXPECT_NE(X509_get0_subject_key_id(x), nullptr);
  EXPECT_EQ(X509_get_version(x), X509_VERSION_3);

  EXPECT_EQ(EVP_PKEY_get_id(ca.private_key()), EVP_PKEY_EC);
  char group[64] = {};
  size_t group_len = 0;
  EVP_PKEY_get_group_name(ca.private_key(), group, sizeof group, &group_len);
  EXPECT_STREQ(group, "prime256v1");
  EXPECT_EQ(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);

  const std::time_t now = std::time(nullptr);
  const std::time_t not_before = asn1_to_time(X509_get0_notBefore(x));
  const std::time_t not_after = asn1_to_time(X509_get0_notAfter(x));
  EXPECT_LE(not_before, now - 3600 + 5);
  EXPECT_GE(not_after - now, 3649L * 86400);
  EXPECT_LE(not_after - now, 3651L * 86400);

  EXPECT_EQ(ca.subject().rfind("CN=okta-sidecar local CA ", 0), 0u) << ca.subject();
  EXPECT_LE(ca.subject().size(), 3u + 64u);
  EXPECT_EQ(ca.certificate_pem().rfind("-----BEGIN CERTIFICATE-----", 0), 0u);
  EXPECT_EQ(read_text(cert_), ca.certificate_pem());
  // Self-signed and valid as a trust anchor.
  EXPECT_EQ(X509_check_issued(x, x), X509_V_OK);
  EXPECT_EQ(X509_verify(x, ca.private_key()), 1);
}

TEST_F(CertificateAuthorityTest, KeyIs0600AndCertIs0644WhateverTheUmask) {
  for (mode_t mask : {mode_t{0}, mode_t{022}, mode_t{077}}) {
    SCOPED_TRACE(mask);
    temp_dir dir;
    const mode_t old = ::umask(mask);
    certificate_authority::load_or_create(dir.file("ca.crt"), dir.file("ca.key"));
    ::umask(old);
    EXPECT_EQ(file_mode(dir.file("ca.key")), 0600u);
    EXPECT_EQ(file_mode(dir.file("ca.crt")), 0644u);
  }
}

TEST_F(CertificateAuthorityTest, ReloadGivesTheSameCertificateAndKey) {
  const auto first = certificate_authority::load_or_create(cert_, key_);
  const auto second = certificate_authority::load_or_create(cert_, key_);
  EXPECT_FALSE(second.created());
  EXPECT_EQ(first.certificate_pem(), second.certificate_pem());
  EXPECT_EQ(first.subject(), second.subject());
  EXPECT_EQ(EVP_PKEY_eq(first.private_key(), second.private_key()), 1);
}

TEST_F(CertificateAuthorityTest, TwoCreatedCasDifferInSerialAndKey) {
  temp_dir other;
  const auto a = certificate_authority::load_or_create(cert_, key_);
  const auto b = certificate_authority::load_or_create(other.file("ca.crt"), other.file("ca.key"));
  EXPECT_NE(
      ASN1_INTEGER_cmp(X509_get0_serialNumber(a.certificate()), X509_get0_serialNumber(b.certificate())), 0);
  EXPECT_NE(EVP_PKEY_eq(a.private_key(), b.private_key()), 1);
}

TEST_F(CertificateAuthorityTest, LoadsACaMadeElsewhereIncludingRsa) {
  for (const char* type : {"EC", "RSA"}) {
    SCOPED_TRACE(type);
    temp_dir dir;
    auto key = make_key(type);
    auto cert = make_cert(key.get(), cert_spec{});
    write_file(dir.file("ca.crt"), cert_pem(cert.get()), 0644);
    write_file(dir.file("ca.key"), key_pem(key.get()), 0400);
    const auto ca = certificate_authority::load_or_create(dir.file("ca.crt"), dir.file("ca.key"));
    EXPECT_FALSE(ca.created());
    EXPECT_EQ(ca.subject(), "CN=test");
    EXPECT_EQ(X509_cmp(ca.certificate(), cert.get()), 0);
  }
}

// Each refusal names the offending file and says how to fix it.
struct refusal_case {
  const char* name;
  std::function<void(const std::string& cert, const std::string& key)> setup;
  bool blame_key;  // the message names the key file (else the cert file)
  const char* says;
};

std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    files[e.path().filename().string()] = e.is_regular_file() ? read_text(e.path().string()) : "<dir>";
  }
  return files;
}

class CertificateAuthorityRefusalTest : public ::testing::TestWithParam<refusal_case> {};

TEST_P(CertificateAuthorityRefusalTest, RefusesWithMessageNamingFileAndFix) {
  temp_dir dir;
  const std::string cert = dir.file("ca.crt");
  const std::string key = dir.file("ca.key");
  GetParam().setup(cert, key);
  const auto before = snapshot(dir.path());
  try {
    certificate_authority::load_or_create(cert, key);
    FAIL() << "accepted";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(GetParam().blame_key ? "ca.key_file " + key : "ca.cert_file " + cert),
              std::string::npos)
        << message;
    EXPECT_NE(message.find(GetParam().says), std::string::npos) << message;
  }
  // A refusal never creates, removes or rewrites anything.
  EXPECT_EQ(snapshot(dir.path()), before);
}

void write_pair(const std::string& cert, const std::string& key, const cert_spec& spec,
                mode_t key_mode = 0600) {
  auto k = make_key();
  auto c = make_cert(k.get(), spec);
  write_file(cert, cert_pem(c.get()), 0644);
  write_file(key, key_pem(k.get()), key_mode);
}

cert_spec spec_with(std::function<void(cert_spec&)> change) {
  cert_spec spec;
  change(spec);
  return spec;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CertificateAuthorityRefusalTest,
    ::testing::Values(
        refusal_case{"OnlyCertExists", [](auto& cert, auto&) { write_file(cert, "x", 0644); }, false,
                     "provide both files"},
        refusal_case{"OnlyKeyExists", [](auto&, auto& key) { write_file(key, "x", 0600); }, true,
                     "provide both files"},
        refusal_case{"WorldReadableKey", [](auto& cert, auto& key) { write_pair(cert, key, {}, 0644); }, true,
                     "chmod 600"},
        // Root-owned keys may be readable by their group (PostgreSQL's rule), never writable.
        refusal_case{"GroupReadableWritableKey",
                     [](auto& cert, auto& key) { write_pair(cert, key, {}, 0660); }, true, "mode 0660"},
        refusal_case{"GroupWritableKey", [](auto& cert, auto& key) { write_pair(cert, key, {}, 0620); }, true,
                     "chmod 600"},
        refusal_case{"GarbageKey",
                     [](auto& cert, auto& key) {
                       write_pair(cert, key, {});
                       write_file(key, "not a key\n", 0600);
                     },
                     true, "not an unencrypted PEM private key"},
        refusal_case{"EncryptedKeyIsNotPrompted",
                     [](auto& cert, auto& key) {
                       auto k = make_key();
                       write_file(cert, cert_pem(make_cert(k.get(), {}).get()), 0644);
                       write_file(key, key_pem(k.get(), "secret"), 0600);
                     },
                     true, "not an unencrypted PEM private key"},
        refusal_case{"GarbageCert",
                     [](auto& cert, auto& key) {
                       write_pair(cert, key, {});
                       write_file(cert,
                                  "-----BEGIN CERTIFICATE-----\nAAAA\n-----END "
                                  "CERTIFICATE-----\n",
                                  0644);
                     },
                     false, "not a PEM certificate"},
        refusal_case{"EmptyCert",
                     [](auto& cert, auto& key) {
                       write_pair(cert, key, {});
                       write_file(cert, "", 0644);
                     },
                     false, "not a PEM certificate"},
        refusal_case{"MismatchedKey",
                     [](auto& cert, auto& key) {
                       write_pair(cert, key, {});
                       write_file(key, key_pem(make_key().get()), 0600);
                     },
                     true, "does not match the certificate in"},
        refusal_case{"NotACa",
                     [](auto& cert, auto& key) {
                       write_pair(cert, key, spec_with([](cert_spec& s) {
                                    s.ca = false;
                                    s.key_usage = "critical,digitalSignature";
                                  }));
                     },
                     false, "not a CA certificate"},
        refusal_case{"CaWithoutKeyCertSign",
                     [](auto& cert, auto& key) {
                       write_pair(cert, key,
                                  spec_with([](cert_spec& s) { s.key_usage = "critical,cRLSign"; }));
                     },
                     false, "keyCertSign"},
        refusal_case{"ExpiredCa",
                     [](auto& cert, auto& key) {
                       write_pair(cert, key, spec_with([](cert_spec& s) {
                                    s.not_before_offset = -86400 * 30;
                                    s.not_after_offset = -60;
                                  }));
                     },
                     false, "has expired"},
        refusal_case{"NotYetValidCa",
                     [](auto& cert, auto& key) {
                       write_pair(cert, key, spec_with([](cert_spec& s) {
                                    s.not_before_offset = 86400;
                                    s.not_after_offset = 86400 * 30;
                                  }));
                     },
                     false, "not valid yet"},
        refusal_case{"CertIsADirectory",
                     [](auto& cert, auto& key) {
                       std::filesystem::create_directory(cert);
                       write_file(key, "x", 0600);
                     },
                     false, "not a regular file"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(CertificateAuthorityTest, CreationFailsNamingTheDirectoryWhenItCannotBeMade) {
  write_file(dir_.file("blocker"), "a file where a directory should be", 0644);
  try {
    certificate_authority::load_or_create(dir_.file("blocker/ca.crt"), dir_.file("blocker/ca.key"));
    FAIL() << "accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create directory " + dir_.file("blocker")),
              std::string::npos)
        << e.what();
  }
}

TEST_F(CertificateAuthorityTest, FailedCertWriteLeavesNoLoneKeyBehind) {
  // A dangling symlink looks absent but O_EXCL refuses to create through it (even for root).
  std::filesystem::create_symlink(dir_.file("nowhere/ca.crt"), dir_.file("ca.crt"));
  try {
    certificate_authority::load_or_create(dir_.file("ca.crt"), dir_.file("ca.key"));
    FAIL() << "accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("ca.cert_file " + dir_.file("ca.crt") + ": cannot be created"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.file("ca.key")));
}

// ---- issue 14: ownership, links, state directory, name constraints ------------------------

TEST(KeyFileRule, PostgresqlOwnerAndModeRule) {
  struct row {
    uid_t owner;
    mode_t mode;
    uid_t me;
    bool ok;
    const char* says;
  };
  const row rows[] = {
      {1000, 0600, 1000, true, ""},
      {1000, 0400, 1000, true, ""},
      {1000, 0640, 1000, false, "mode 0640"},
      {1000, 0604, 1000, false, "mode 0604"},
      {0, 0640, 1000, true, ""},
      {0, 0600, 1000, true, ""},
      {0, 0660, 1000, false, "mode 0660"},
      {0, 0644, 1000, false, "chmod 600"},
      {0, 0650, 1000, false, "mode 0650"},
      {2000, 0600, 1000, false, "belongs to user id 2000"},
      {2000, 0400, 0, false, "belongs to user id 2000"},
      {0, 0600, 0, true, ""},
  };
  for (const auto& r : rows) {
    const std::string why = detail::key_file_problem(r.owner, r.mode, r.me, "/k");
    EXPECT_EQ(why.empty(), r.ok) << r.owner << " " << r.mode << " " << why;
    EXPECT_NE(why.find(r.says), std::string::npos) << why;
  }
}

TEST_F(CertificateAuthorityTest, KeyBehindASymbolicLinkIsRefused) {
  const auto made = certificate_authority::load_or_create(dir_.file("real/ca.crt"), dir_.file("real/ca.key"));
  std::filesystem::create_directories(dir_.file("linked"));
  std::filesystem::copy_file(dir_.file("real/ca.crt"), dir_.file("linked/ca.crt"));
  std::filesystem::create_symlink(dir_.file("real/ca.key"), dir_.file("linked/ca.key"));
  try {
    certificate_authority::load_or_create(dir_.file("linked/ca.crt"), dir_.file("linked/ca.key"));
    FAIL() << "accepted a key behind a symbolic link";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("is a symbolic link"), std::string::npos) << e.what();
  }
  // The certificate is not followed through a link either.
  std::filesystem::remove(dir_.file("linked/ca.crt"));
  std::filesystem::remove(dir_.file("linked/ca.key"));
  std::filesystem::copy_file(dir_.file("real/ca.key"), dir_.file("linked/ca.key"));
  std::filesystem::create_symlink(dir_.file("real/ca.crt"), dir_.file("linked/ca.crt"));
  EXPECT_THROW(certificate_authority::load_or_create(dir_.file("linked/ca.crt"), dir_.file("linked/ca.key")),
               std::runtime_error);
}

TEST_F(CertificateAuthorityTest, KeyOwnedByAnotherUserIsRefusedAndRootGroupReadableAccepted) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give the key away";
  certificate_authority::load_or_create(cert_, key_);
  ASSERT_EQ(::chown(key_.c_str(), 4242, 4242), 0);
  try {
    certificate_authority::load_or_create(cert_, key_);
    FAIL() << "accepted a key of user 4242";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("belongs to user id 4242"), std::string::npos) << e.what();
  }
  ASSERT_EQ(::chown(key_.c_str(), 0, 4242), 0);
  ASSERT_EQ(::chmod(key_.c_str(), 0640), 0);
  EXPECT_NO_THROW(certificate_authority::load_or_create(cert_, key_));
}

TEST_F(CertificateAuthorityTest, CreatedDirectoriesAre0700AndTheCertificateReadable) {
  const mode_t old = ::umask(0);
  certificate_authority::load_or_create(cert_, key_);
  ::umask(old);
  EXPECT_EQ(file_mode(dir_.file("state/nested")), 0700u);
  EXPECT_EQ(file_mode(cert_), 0644u);
  EXPECT_EQ(file_mode(key_), 0600u);
}

TEST_F(CertificateAuthorityTest, CreatedCaPermitsOnlyTheInterceptedDomains) {
  const auto ca =
      certificate_authority::load_or_create(cert_, key_, {"okta.com", "oktapreview.com", "example.org"});
  X509* x = ca.certificate();
  EXPECT_TRUE(extension_critical(x, NID_name_constraints));
  EXPECT_EQ(ca.host_outside_constraints({"*.okta.com", "acme.okta.com", "acme.oktapreview.com:443",
                                         "login.example.org", "*.example.org:8443"}),
            std::nullopt);
  EXPECT_EQ(ca.host_outside_constraints({"acme.okta.com", "*.evil.com"}), "*.evil.com");
  EXPECT_EQ(ca.host_outside_constraints({"okta.com.evil.net"}), "okta.com.evil.net");
  EXPECT_EQ(ca.host_outside_constraints({"10.0.0.1"}), "10.0.0.1") << "addresses are excluded";
  // A leaf for another site, signed by this CA, fails verification.
  const auto reloaded = certificate_authority::load_or_create(cert_, key_);
  EXPECT_EQ(reloaded.host_outside_constraints({"*.evil.com"}), "*.evil.com");
}

TEST_F(CertificateAuthorityTest, IpLiteralsCanBePermittedOneByOne) {
  const auto ca = certificate_authority::load_or_create(cert_, key_, {"okta.com", "127.0.0.1"});
  EXPECT_EQ(ca.host_outside_constraints({"127.0.0.1", "acme.okta.com"}), std::nullopt);
  EXPECT_EQ(ca.host_outside_constraints({"127.0.0.2"}), "127.0.0.2");
}

TEST_F(CertificateAuthorityTest, CaWithoutConstraintsPermitsEverything) {
  const auto ca = certificate_authority::load_or_create(cert_, key_);
  EXPECT_EQ(ca.host_outside_constraints({"*.evil.com", "10.0.0.1"}), std::nullopt);
}

TEST(FingerprintKey, CreatedOnceKeptPrivateAndUsedForHmacSha256) {
  temp_dir dir;
  const std::string state = dir.file("state");
  const auto k1 = fingerprint_key::load_or_create(state);
  EXPECT_EQ(file_mode(state), 0700u);
  const std::string file = state + "/fingerprint.key";
  EXPECT_EQ(file_mode(file), 0600u);
  const std::string hex = read_text(file);
  ASSERT_EQ(hex.size(), 65u);
  const auto k2 = fingerprint_key::load_or_create(state);
  EXPECT_EQ(k1.digest("token"), k2.digest("token")) << "the same key after a restart";
  EXPECT_NE(k1.digest("token"), k1.digest("token2"));
  // HMAC-SHA-256 with the stored key, as OpenSSL computes it.
  unsigned char key[32];
  for (int i = 0; i < 32; ++i)
    key[i] = static_cast<unsigned char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  unsigned char want[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key, 32, reinterpret_cast<const unsigned char*>("token"), 5, want, &len);
  const auto got = k1.digest("token");
  EXPECT_TRUE(std::equal(got.begin(), got.end(), want));
  // Another install, another key.
  temp_dir other;
  const auto k3 = fingerprint_key::load_or_create(other.file("s"));
  EXPECT_NE(k3.digest("token"), k1.digest("token"));
  // A thread keeps one HMAC context and resets it for each digest: every length, and the keys
  // taking turns, give what a fresh HMAC() gives.
  for (const std::size_t n : {0, 1, 40, 63, 64, 65, 1000, 5000}) {
    const std::string data(n, static_cast<char>('a' + n % 26));
    HMAC(EVP_sha256(), key, 32, reinterpret_cast<const unsigned char*>(data.data()), data.size(), want, &len);
    for (int turn = 0; turn < 2; ++turn) {
      const auto a = k1.digest(data);
      EXPECT_TRUE(std::equal(a.begin(), a.end(), want)) << n << " bytes, turn " << turn;
      EXPECT_NE(k3.digest(data), a) << n << " bytes, turn " << turn;
    }
  }
  // Same rules as the CA key.
  ASSERT_EQ(::chmod(file.c_str(), 0644), 0);
  EXPECT_THROW(fingerprint_key::load_or_create(state), std::runtime_error);
}

}  // namespace
}  // namespace okta_sidecar::tls
