#include "okta_sidecar/policy/cidr.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace okta_sidecar::policy {
namespace {

TEST(CidrList, EmptyList) {
  const auto l = cidr_list::parse({});
  EXPECT_TRUE(l.empty());
  EXPECT_FALSE(l.contains("127.0.0.1"));
}

struct contains_case {
  const char* ip;
  bool in;
};

TEST(CidrList, ContainsTable) {
  const auto m = cidr_list::parse(
      {"10.0.0.0/8", "192.168.1.7", "172.16.0.0/12", "2001:db8::/32", "::1", "100.64.0.0/10"});
  const contains_case cases[] = {
      {"10.0.0.0", true},
      {"10.255.255.255", true},
      {"11.0.0.0", false},
      {"9.255.255.255", false},
      {"192.168.1.7", true},
      {"192.168.1.8", false},
      {"172.31.255.255", true},
      {"172.32.0.0", false},
      {"172.15.255.255", false},
      {"100.127.0.1", true},
      {"100.128.0.1", false},
      {"2001:db8::1", true},
      {"2001:db8:ffff::1", true},
      {"2001:db9::1", false},
      {"::1", true},
      {"::2", false},
      {"::ffff:10.1.2.3", true},
      {"::ffff:11.1.2.3", false},
      {"fe80::1%eth0", false},
      {"garbage", false},
      {"", false},
  };
  EXPECT_FALSE(m.empty());
  for (const auto& c : cases) EXPECT_EQ(m.contains(c.ip), c.in) << c.ip;
}

TEST(CidrList, ZeroPrefixMatchesItsFamilyOnly) {
  const auto v4 = cidr_list::parse({"0.0.0.0/0"});
  EXPECT_TRUE(v4.contains("1.2.3.4"));
  EXPECT_TRUE(v4.contains("::ffff:1.2.3.4"));
  EXPECT_FALSE(v4.contains("2001:db8::1"));
  const auto v6 = cidr_list::parse({"::/0"});
  EXPECT_TRUE(v6.contains("2001:db8::1"));
  EXPECT_FALSE(v6.contains("1.2.3.4"));
}

TEST(CidrList, OddPrefixBoundary) {
  const auto l = cidr_list::parse({"10.0.0.0/31", "10.0.1.0/25"});
  EXPECT_TRUE(l.contains("10.0.0.1"));
  EXPECT_FALSE(l.contains("10.0.0.2"));
  EXPECT_TRUE(l.contains("10.0.1.127"));
  EXPECT_FALSE(l.contains("10.0.1.128"));
}

TEST(CidrList, HostBitsAreATypoNotIgnored) {
  // The loader refused "10.1.2.3/8" with a "did you mean"; the runtime now reads the same parser.
  EXPECT_THROW(cidr_list::parse({"10.1.2.3/8"}), std::runtime_error);
  EXPECT_TRUE(cidr_list::parse({"10.0.0.0/8"}).contains("10.200.0.1"));
}

TEST(Cidr, ContainsAtEveryPrefixBoundary) {
  auto ip = [](const char* text) { return *http::parse_ip(text); };
  const auto net = *parse_cidr("192.168.1.128/25");
  EXPECT_FALSE(net.contains(ip("192.168.1.127")));
  EXPECT_TRUE(net.contains(ip("192.168.1.128")));
  EXPECT_TRUE(net.contains(ip("192.168.1.255")));
  EXPECT_FALSE(net.contains(ip("192.168.2.128")));
  EXPECT_TRUE(parse_cidr("0.0.0.0/0")->contains(ip("8.8.8.8")));
  EXPECT_FALSE(parse_cidr("0.0.0.0/0")->contains(ip("::1")));
  EXPECT_TRUE(parse_cidr("::/0")->contains(ip("2001:db8::1")));
  EXPECT_TRUE(parse_cidr("10.0.0.1")->contains(ip("10.0.0.1")));
  EXPECT_FALSE(parse_cidr("10.0.0.1")->contains(ip("10.0.0.2")));
  EXPECT_TRUE(parse_cidr("fd00::/8")->contains(ip("fdff::1")));
  EXPECT_FALSE(parse_cidr("fd00::/8")->contains(ip("fe00::1")));
  // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; ::a.b.c.d is not that.
  EXPECT_TRUE(parse_cidr("10.0.0.0/8")->contains(ip("::ffff:10.9.8.7")));
  EXPECT_FALSE(parse_cidr("10.0.0.0/8")->contains(ip("::ffff:11.0.0.1")));
  EXPECT_FALSE(parse_cidr("10.0.0.0/8")->contains(ip("::10.9.8.7")));
}

TEST(Cidr, ParseWithoutAReasonWanted) {
  EXPECT_TRUE(parse_cidr("10.0.0.0/8"));
  EXPECT_FALSE(parse_cidr("10.0.0.0/33"));
  std::string why;
  EXPECT_FALSE(parse_cidr("10.0.0.1/8", &why));
  EXPECT_EQ(why, "has address bits set after the /8 prefix (did you mean \"10.0.0.0/8\"?)");
}

TEST(CidrList, MappedV6RangeMatchesPlainV4) {
  const auto l = cidr_list::parse({"::ffff:10.0.0.0/104"});
  EXPECT_TRUE(l.contains("10.9.9.9"));
  EXPECT_FALSE(l.contains("11.0.0.1"));
}

TEST(CidrList, BadEntriesThrowNamingTheEntry) {
  for (const char* bad :
       {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/08", "10.0.0/8", "banana", "", "/8",
        "10.0.0.0/8/8", "fe80::1%eth0/64", "10.0.0.0/ 8", "10.0.0.1/8"}) {
    try {
      cidr_list::parse({"10.0.0.0/8", bad});
      ADD_FAILURE() << "accepted " << bad;
    } catch (const std::runtime_error& e) {
      EXPECT_THAT(e.what(), ::testing::HasSubstr(std::string("\"") + bad + "\"")) << bad;
      EXPECT_THAT(e.what(), ::testing::HasSubstr("allowed_clients"));
    }
  }
}

}  // namespace
}  // namespace okta_sidecar::policy
