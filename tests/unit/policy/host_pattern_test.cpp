#include "okta_sidecar/policy/host_pattern.hpp"

#include <gtest/gtest.h>

#include <string>

namespace okta_sidecar::policy {
namespace {

TEST(IsDnsName, Rfc1123NamesOnly) {
  for (const char* ok :
       {"localhost", "acme.okta.com", "ACME.Okta.com", "a-b.c", "x1.y2", "3com.example", "a"})
    EXPECT_TRUE(is_dns_name(ok)) << ok;
  for (const char* bad : {"", "-a.com", "a-.com", "a..b", "a.b.", ".a", "a_b.com", "a b", "10.0.0.1", "127.1",
                          "1.2.3", "*.okta.com", "::1", "a.com:443", "a%2eb.com"})
    EXPECT_FALSE(is_dns_name(bad)) << bad;
  EXPECT_TRUE(is_dns_name(std::string(63, 'a') + ".com"));
  EXPECT_FALSE(is_dns_name(std::string(64, 'a') + ".com"));
  std::string longest;
  while (longest.size() + 2 <= 253) longest += "a.";
  longest.pop_back();
  EXPECT_EQ(longest.size(), 251u);
  EXPECT_TRUE(is_dns_name(longest + "bb"));
  EXPECT_FALSE(is_dns_name(longest + "bbb"));
}

TEST(HostPattern, WildcardMatchesSubdomainsOnly) {
  const auto p = *parse_host_pattern("*.OKTA.com");
  EXPECT_EQ(p.host, "okta.com");
  EXPECT_TRUE(p.matches_host("acme.okta.com"));
  EXPECT_TRUE(p.matches_host("a.b.okta.com"));
  EXPECT_FALSE(p.matches_host("okta.com"));
  EXPECT_FALSE(p.matches_host("evilokta.com"));
  EXPECT_FALSE(p.matches_host("acme.okta.com.evil.net"));
  const auto exact = *parse_host_pattern("acme.okta.com:8443");
  EXPECT_EQ(exact.port, 8443);
  EXPECT_TRUE(exact.matches_host("acme.okta.com"));
  EXPECT_FALSE(exact.matches_host("x.acme.okta.com"));
}

TEST(HostPattern, LiteralsAreStoredNormalised) {
  EXPECT_EQ(parse_host_pattern("[2001:DB8:0::1]:443")->host, "2001:db8::1");
  EXPECT_EQ(parse_host_pattern("10.1.2.3")->host, "10.1.2.3");
  EXPECT_EQ(*parse_host_pattern("[::0:1]"), *parse_host_pattern("[::1]"));
}

TEST(HostPattern, ReasonOnlyWhenAsked) {
  EXPECT_FALSE(parse_host_pattern("*.com"));
  std::string why;
  EXPECT_FALSE(parse_host_pattern("*.10.0.0.1", &why));
  EXPECT_EQ(why, "is a wildcard over IP addresses; a *. wildcard needs a DNS suffix");
  why.clear();
  EXPECT_TRUE(parse_host_pattern("acme.okta.com", &why));
  EXPECT_TRUE(why.empty());
}

}  // namespace
}  // namespace okta_sidecar::policy
