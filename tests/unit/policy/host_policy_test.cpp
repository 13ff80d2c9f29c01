#include "okta_sidecar/policy/host_policy.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace okta_sidecar::policy {
namespace {

struct norm_case {
  const char* in;
  const char* out;  // nullptr: rejected
};

TEST(NormalizeHost, Table) {
  const norm_case cases[] = {
      {"acme.okta.com", "acme.okta.com"},
      {"ACME.Okta.COM", "acme.okta.com"},
      {"acme.okta.com.", "acme.okta.com"},
      {"acme.okta.com..", nullptr},
      {".acme.okta.com", nullptr},
      {"acme..okta.com", nullptr},
      {"a-b.okta.com", "a-b.okta.com"},
      {"-ab.okta.com", nullptr},
      {"ab-.okta.com", nullptr},
      {"a_b.okta.com", nullptr},
      {"acme okta.com", nullptr},
      {"acme.okta.com:443", nullptr},
      {"user@acme.okta.com", nullptr},
      {"acme%2eokta.com", nullptr},
      {"acme.okta.com/x", nullptr},
      {"ac\xc3\xa9me.com", nullptr},
      {"", nullptr},
      {".", nullptr},
      // localhost tricks (RFC 6761 §6.3).
      {"localhost", nullptr},
      {"LOCALHOST", nullptr},
      {"localhost.", nullptr},
      {"evil.localhost", nullptr},
      {"localhost.localdomain", nullptr},
      {"ip6-localhost", nullptr},
      {"localhost.okta.com", "localhost.okta.com"},
      // Numeric IPv4 forms: only the canonical dotted quad is an address.
      {"127.0.0.1", "127.0.0.1"},
      {"127.0.0.1.", "127.0.0.1"},
      {"2130706433", nullptr},
      {"0x7f.1", nullptr},
      {"0x7f000001", nullptr},
      {"127.1", nullptr},
      {"127.0.1", nullptr},
      {"0177.0.0.1", nullptr},
      {"127.0.0.01", nullptr},
      {"1.2.3.256", nullptr},
      {"acme.0x10", nullptr},
      {"acme.123", nullptr},
      {"0x7f.example.com", "0x7f.example.com"},
      {"123.example.com", "123.example.com"},
      // IPv6.
      {"[::1]", "::1"},
      {"[2001:DB8::0:1]", "2001:db8::1"},
      {"2001:db8::1", "2001:db8::1"},
      {"[fe80::1%25eth0]", nullptr},
      {"[::1", nullptr},
      {"[acme.okta.com]", nullptr},
  };
  for (const auto& c : cases) {
    const auto got = host_policy::normalize_host(c.in);
    if (c.out == nullptr) {
      EXPECT_FALSE(got) << c.in << " -> " << got.value_or("");
    } else {
      EXPECT_EQ(got, std::optional<std::string>(c.out)) << c.in;
    }
  }
}

TEST(NormalizeHost, LengthBoundary) {
  auto name_of_length = [](std::size_t n) {
    std::string s;
    while (s.size() < n) s += s.empty() ? "a" : ".a";
    if (s.size() > n) s.pop_back();
    if (s.back() == '.') s.back() = 'b';
    return s;
  };
  EXPECT_TRUE(host_policy::normalize_host(name_of_length(253)));
  EXPECT_FALSE(host_policy::normalize_host(name_of_length(254)));
  EXPECT_TRUE(host_policy::normalize_host(std::string(63, 'a') + ".com"));
  EXPECT_FALSE(host_policy::normalize_host(std::string(64, 'a') + ".com"));
}

const std::vector<std::string> default_intercept = {"*.okta.com", "*.oktapreview.com", "*.okta-emea.com",
                                                    "*.okta-gov.com"};

struct decide_case {
  const char* host;
  std::uint16_t port;
  route want;
};

TEST(HostPolicyDecide, DefaultsAndLists) {
  const host_policy p(
      default_intercept,
      {"github.com", "*.githubusercontent.com", "pypi.org:8443", "10.1.2.3", "[2001:db8::5]:443"}, {443, 80});
  const decide_case cases[] = {
      {"acme.okta.com", 443, route::intercept},
      {"ACME.OKTA.COM.", 443, route::intercept},
      {"acme.okta.com", 80, route::intercept},
      {"a.b.c.acme.okta.com", 443, route::intercept},  // any depth
      {"okta.com", 443, route::refuse},                // never the bare suffix
      {"evilokta.com", 443, route::refuse},
      {"acme.okta.com.evil.com", 443, route::refuse},
      {"acme.okta.com", 22, route::refuse},
      {"acme.okta.com", 8443, route::refuse},
      {"acme.oktapreview.com", 443, route::intercept},
      {"github.com", 443, route::tunnel},
      {"api.github.com", 443, route::refuse},  // exact pattern: no subdomains
      {"raw.githubusercontent.com", 443, route::tunnel},
      {"pypi.org", 8443, route::tunnel},  // explicit port replaces allowed_ports
      {"pypi.org", 443, route::refuse},
      {"10.1.2.3", 443, route::tunnel},
      {"10.1.2.4", 443, route::refuse},
      {"[2001:db8::5]", 443, route::tunnel},
      {"2001:db8:0::5", 443, route::tunnel},
      {"[2001:db8::5]", 80, route::refuse},
      {"127.0.0.1", 443, route::refuse},
      {"localhost", 443, route::refuse},
      {"2130706433", 443, route::refuse},
      {"", 443, route::refuse},
      {"example.com", 443, route::refuse},
  };
  for (const auto& c : cases) EXPECT_EQ(p.decide(c.host, c.port).r, c.want) << c.host << ":" << c.port;
}

TEST(HostPolicyDecide, RefusalReasons) {
  const host_policy p(default_intercept, {}, {443});
  EXPECT_EQ(p.decide("acme.okta.com", 22).why, "port 22 not allowed");
  EXPECT_EQ(p.decide("example.com", 443).why, "host not in intercept_hosts or tunnel_hosts");
  EXPECT_EQ(p.decide("localhost", 443).why, "invalid or forbidden host name");
  EXPECT_TRUE(p.decide("acme.okta.com", 443).why.empty());
}

TEST(HostPolicyDecide, InterceptWinsOverTunnel) {
  const host_policy p({"acme.okta.com"}, {"*.okta.com"}, {443});
  EXPECT_EQ(p.decide("acme.okta.com", 443).r, route::intercept);
  EXPECT_EQ(p.decide("other.okta.com", 443).r, route::tunnel);
}

TEST(HostPolicyDecide, PortOnWildcardAndFallThroughToTunnel) {
  const host_policy p({"*.okta.com:443"}, {"*.okta.com:8443"}, {});
  EXPECT_EQ(p.decide("a.okta.com", 443).r, route::intercept);
  EXPECT_EQ(p.decide("a.okta.com", 8443).r, route::tunnel);
  EXPECT_EQ(p.decide("a.okta.com", 80).r, route::refuse);
}

TEST(HostPolicyDecide, EmptyListsRefuseEverything) {
  const host_policy p({}, {}, {443});
  EXPECT_EQ(p.decide("acme.okta.com", 443).r, route::refuse);
}

TEST(HostPolicyPatterns, BadPatternsThrowNamingThePattern) {
  for (const char* bad :
       {"*", "*.", "*.com", "**.okta.com", "a.*.okta.com", "*okta.com", "okta.*", "acme.okta.com:0",
        "acme.okta.com:65536", "acme.okta.com:", "acme.okta.com:x", "[::1", "[::1]x", "[::1]:", "*.10.0.0.1",
        "localhost", "127.1", "", "a b.com", "user@acme.okta.com",
        // the loader always refused these; the runtime now reads its parser
        "::1", "acme.okta.com.", "acme.okta.com:0443"}) {
    try {
      host_policy({bad}, {}, {443});
      ADD_FAILURE() << "accepted " << bad;
    } catch (const std::runtime_error& e) {
      EXPECT_THAT(e.what(), ::testing::HasSubstr(std::string("\"") + bad + "\"")) << bad;
      EXPECT_THAT(e.what(), ::testing::HasSubstr("intercept_hosts")) << bad;
    }
  }
  EXPECT_THROW(host_policy({}, {"*"}, {443}), std::runtime_error);
  try {
    host_policy({}, {"bad host"}, {443});
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("tunnel_hosts"));
  }
}

TEST(HostPolicyPatterns, GoodPatternsAccepted) {
  EXPECT_NO_THROW(host_policy(
      {"*.okta.com", "acme.okta.com:8443", "10.0.0.1", "[::1]:443", "[::1]", "ACME.OKTA.COM", "*.a.b.c"}, {},
      {443}));
}

}  // namespace
}  // namespace okta_sidecar::policy

namespace okta_sidecar::policy {
namespace {

TEST(HostPolicyIntercepts, IgnoresThePortAndListsExactNamesAndSuffixes) {
  host_policy p({"*.okta.com", "fixed.example.com:8443", "10.1.2.3"}, {"tunnel.example.com"}, {443});
  EXPECT_TRUE(p.intercepts("acme.okta.com"));
  EXPECT_TRUE(p.intercepts("ACME.okta.com."));
  EXPECT_TRUE(p.intercepts("fixed.example.com"));
  EXPECT_FALSE(p.intercepts("okta.com"));
  EXPECT_FALSE(p.intercepts("tunnel.example.com"));
  EXPECT_FALSE(p.intercepts("localhost"));
  EXPECT_EQ(p.exact_intercept_hosts(), (std::vector<std::string>{"fixed.example.com", "10.1.2.3"}));
  EXPECT_EQ(p.intercept_suffixes(), (std::vector<std::string>{"okta.com"}));
}

}  // namespace
}  // namespace okta_sidecar::policy
