#include "okta_sidecar/tls/leaf_cache.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <thread>
#include <vector>

#include "okta_sidecar/tls/certificate_authority.hpp"
#include "tls_test_support.hpp"

namespace okta_sidecar::tls {
namespace {

using namespace testing;
using std::chrono::hours;
using std::chrono::seconds;

class LeafCacheTest : public ::testing::Test {
 protected:
  temp_dir dir_;
  certificate_authority ca_ = certificate_authority::load_or_create(dir_.file("ca.crt"), dir_.file("ca.key"));
  // Whole seconds, as certificates store them, so validity windows compare exactly; "now"
  // because the freshly created CA is only valid from now on.
  const std::time_t start_time = std::time(nullptr);
  fake_clock clock_{wall_clock::from_time_t(start_time)};
  leaf_cache cache_{ca_, 10000, &clock_};
};

TEST_F(LeafCacheTest, DnsLeafHasExactlyTheHostAsSanAndServerExtensions) {
  const auto leaf = cache_.get("acme.okta.com");
  ASSERT_NE(leaf, nullptr);
  X509* x = leaf.get();
  EXPECT_EQ(subject_alt_names(x), std::vector<std::string>{"DNS:acme.okta.com"});
  EXPECT_EQ(X509_get_extended_key_usage(x), static_cast<uint32_t>(XKU_SSL_SERVER));
  EXPECT_EQ(X509_get_key_usage(x), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  EXPECT_TRUE(extension_critical(x, NID_key_usage));
  EXPECT_EQ(X509_get_extension_flags(x) & EXFLAG_CA, 0u);
  EXPECT_EQ(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
  EXPECT_EQ(X509_get_version(x), X509_VERSION_3);
  EXPECT_EQ(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(ca_.certificate())), 0);
  // AKI names the CA's key, so chains build even when several sidecar CAs share a subject.
  ASSERT_NE(X509_get0_authority_key_id(x), nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x), X509_get0_subject_key_id(ca_.certificate())),
            0);
  // Every leaf certifies the one in-memory leaf key.
  EXPECT_EQ(EVP_PKEY_eq(X509_get0_pubkey(x), cache_.leaf_key()), 1);
  EXPECT_EQ(EVP_PKEY_get_id(cache_.leaf_key()), EVP_PKEY_EC);
}

TEST_F(LeafCacheTest, ValidityIsBackdatedOneHourAndLastsSevenDays) {
  const auto leaf = cache_.get("acme.okta.com");
  ASSERT_NE(leaf, nullptr);
  EXPECT_EQ(asn1_to_time(X509_get0_notBefore(leaf.get())), start_time - 3600);
  EXPECT_EQ(asn1_to_time(X509_get0_notAfter(leaf.get())), start_time + 7 * 86400);
}

TEST_F(LeafCacheTest, SerialsAreRandom128BitPositive) {
  const auto a = cache_.get("a.okta.com");
  const auto b = cache_.get("b.okta.com");
  ASSERT_TRUE(a && b);
  for (X509* x : {a.get(), b.get()}) {
    const ASN1_INTEGER* serial = X509_get0_serialNumber(x);
    EXPECT_EQ(ASN1_STRING_length(serial), 16);
    EXPECT_EQ(ASN1_STRING_type(serial), V_ASN1_INTEGER);  // not V_ASN1_NEG_INTEGER
  }
  EXPECT_NE(ASN1_INTEGER_cmp(X509_get0_serialNumber(a.get()), X509_get0_serialNumber(b.get())), 0);
}

TEST_F(LeafCacheTest, LeafVerifiesAgainstTheCaForItsHostOnly) {
  const auto leaf = cache_.get("acme.okta.com");
  ASSERT_NE(leaf, nullptr);
  EXPECT_EQ(verify_leaf(leaf.get(), ca_.certificate(), "acme.okta.com", false, start_time), X509_V_OK);
  EXPECT_EQ(verify_leaf(leaf.get(), ca_.certificate(), "other.okta.com", false, start_time),
            X509_V_ERR_HOSTNAME_MISMATCH);
  EXPECT_EQ(verify_leaf(leaf.get(), ca_.certificate(), "acme.okta.com", false, start_time + 7 * 86400 + 1),
            X509_V_ERR_CERT_HAS_EXPIRED);
}

struct ip_case {
  const char* input;
  const char* san;
  const char* verify_as;
};

class LeafCacheIpTest : public LeafCacheTest, public ::testing::WithParamInterface<ip_case> {};

TEST_P(LeafCacheIpTest, IpLiteralsGetAnIpSan) {
  const auto leaf = cache_.get(GetParam().input);
  ASSERT_NE(leaf, nullptr);
  EXPECT_EQ(subject_alt_names(leaf.get()), std::vector<std::string>{GetParam().san});
  EXPECT_EQ(verify_leaf(leaf.get(), ca_.certificate(), GetParam().verify_as, true, start_time), X509_V_OK);
}

INSTANTIATE_TEST_SUITE_P(Cases, LeafCacheIpTest,
                         ::testing::Values(ip_case{"127.0.0.1", "IP:127.0.0.1", "127.0.0.1"},
                                           ip_case{"::1", "IP:::1", "::1"}, ip_case{"[::1]", "IP:::1", "::1"},
                                           ip_case{"[2001:DB8:0::1]", "IP:2001:db8::1", "2001:db8::1"}));

TEST_F(LeafCacheTest, SpellingsOfOneHostShareOneLeaf) {
  const auto a = cache_.get("acme.okta.com");
  const auto b = cache_.get("ACME.Okta.COM");
  const auto c = cache_.get("acme.okta.com.");
  const auto d = cache_.get("[::1]");
  const auto e = cache_.get("0:0::1");
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
  EXPECT_EQ(d, e);
  EXPECT_EQ(cache_.minted_count(), 2u);
  EXPECT_EQ(cache_.size(), 2u);
}

TEST_F(LeafCacheTest, RepeatedGetsMintOnce) {
  const auto first = cache_.get("acme.okta.com");
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(cache_.get("acme.okta.com"), first);
  }
  EXPECT_EQ(cache_.minted_count(), 1u);
}

TEST_F(LeafCacheTest, ReMintsOnlyOnceLessThanOneDayRemains) {
  const auto first = cache_.get("acme.okta.com");
  clock_.advance(hours(24 * 6) - seconds(1));  // 1 day + 1 s left
  EXPECT_EQ(cache_.get("acme.okta.com"), first);
  EXPECT_EQ(cache_.minted_count(), 1u);
  clock_.advance(seconds(1));  // exactly 1 day left
  const auto second = cache_.get("acme.okta.com");
  ASSERT_NE(second, nullptr);
  EXPECT_NE(second, first);
  EXPECT_EQ(cache_.minted_count(), 2u);
  EXPECT_EQ(cache_.size(), 1u);
  EXPECT_EQ(asn1_to_time(X509_get0_notAfter(second.get())), start_time + 13 * 86400);
  EXPECT_EQ(cache_.get("acme.okta.com"), second);
}

TEST_F(LeafCacheTest, EvictsTheLeastRecentlyUsedHostBeyondCapacity) {
  leaf_cache small(ca_, 2, &clock_);
  const auto a = small.get("a.okta.com");
  small.get("b.okta.com");
  EXPECT_EQ(small.get("a.okta.com"), a);  // a is now the most recent
  small.get("c.okta.com");                // evicts b
  EXPECT_EQ(small.size(), 2u);
  EXPECT_EQ(small.minted_count(), 3u);
  EXPECT_EQ(small.get("a.okta.com"), a);
  EXPECT_EQ(small.minted_count(), 3u);
  small.get("b.okta.com");
  EXPECT_EQ(small.minted_count(), 4u);
  EXPECT_EQ(small.size(), 2u);
}

TEST_F(LeafCacheTest, BoundaryLengthNamesAreAccepted) {
  const std::string label63(63, 'a');
  const std::string name253 = label63 + "." + label63 + "." + label63 + "." + std::string(61, 'b');
  ASSERT_EQ(name253.size(), 253u);
  const auto long_label = cache_.get(label63 + ".okta.com");
  ASSERT_NE(long_label, nullptr);
  const auto longest = cache_.get(name253);
  ASSERT_NE(longest, nullptr);
  // Longer than a CN may be (64): the SAN alone carries the name.
  EXPECT_EQ(subject_alt_names(longest.get()), std::vector<std::string>{"DNS:" + name253});
  EXPECT_EQ(verify_leaf(longest.get(), ca_.certificate(), name253, false, start_time), X509_V_OK);
  EXPECT_NE(cache_.get("localhost"), nullptr);
  EXPECT_NE(cache_.get("xn--bcher-kva.example"), nullptr);
  EXPECT_NE(cache_.get("1password.com"), nullptr);
}

class LeafCacheInvalidHostTest : public LeafCacheTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(LeafCacheInvalidHostTest, IsRefusedWithAMessage) {
  std::string error;
  EXPECT_EQ(cache_.get(GetParam(), &error), nullptr);
  EXPECT_EQ(error.rfind("invalid host", 0), 0u) << error;
  EXPECT_EQ(cache_.get(GetParam()), nullptr);  // no error sink is fine too
  EXPECT_EQ(cache_.minted_count(), 0u);
  EXPECT_EQ(ERR_peek_error(), 0u) << "OpenSSL error queue left dirty";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, LeafCacheInvalidHostTest,
    ::testing::Values("", ".", "[]", "-acme.okta.com", "acme-.okta.com", "acme..okta.com", ".okta.com",
                      "ac me.okta.com", "acme_1.okta.com", "*.okta.com", "acme.okta.com/x",
                      "acme.okta.com:443", "acme.okta.com,DNS:evil.com", std::string("acme\0.okta.com", 14),
                      std::string(64, 'a') + ".com",
                      // 254 characters: one over the DNS limit (RFC 1035 §2.3.4)
                      std::string(251, 'a').insert(63, ".").insert(127, ".").insert(191, "."), "10.1",
                      "127.1", "1.2.3.256", "[::1", "fe80::1%eth0", "1:2:3:4:5:6:7:8:9",
                      "\xc3\xa9.okta.com"));

TEST_F(LeafCacheTest, ConcurrentFirstUseMintsOnce) {
  std::vector<std::thread> threads;
  std::vector<std::shared_ptr<x509_st>> seen(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        seen[t] = cache_.get("acme.okta.com");
        cache_.get("host" + std::to_string(i % 5) + ".okta.com");
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  for (const auto& leaf : seen) {
    EXPECT_EQ(leaf, seen[0]);
  }
  EXPECT_EQ(cache_.minted_count(), 6u);
  EXPECT_EQ(cache_.size(), 6u);
}

TEST_F(LeafCacheTest, RootCaIsNotSentAsChainButAnIntermediateIs) {
  EXPECT_EQ(cache_.chain_certificate(), nullptr);

  auto root_key = make_key();
  auto root = make_cert(root_key.get(), cert_spec{.cn = "root"});
  auto inter_key = make_key();
  auto inter = make_cert(inter_key.get(), cert_spec{.cn = "intermediate"}, root.get(), root_key.get());
  write_file(dir_.file("inter.crt"), cert_pem(inter.get()), 0644);
  write_file(dir_.file("inter.key"), key_pem(inter_key.get()), 0600);
  const auto inter_ca = certificate_authority::load_or_create(dir_.file("inter.crt"), dir_.file("inter.key"));
  leaf_cache cache(inter_ca);
  ASSERT_NE(cache.chain_certificate(), nullptr);
  EXPECT_EQ(X509_cmp(cache.chain_certificate(), inter.get()), 0);
}

}  // namespace
}  // namespace okta_sidecar::tls
