#include "okta_sidecar/config/syntax.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

namespace okta_sidecar::config {
namespace {

using ::testing::HasSubstr;

TEST(Cidr, ParsesPrefixesAndBareAddresses) {
  auto c = explain_cidr("10.0.0.0/8");
  ASSERT_TRUE(c);
  EXPECT_EQ(c.value->prefix, 8u);
  EXPECT_TRUE(c.error.empty());
  EXPECT_EQ(explain_cidr("10.1.2.3").value->prefix, 32u);
  EXPECT_EQ(explain_cidr("::1").value->prefix, 128u);
  EXPECT_EQ(explain_cidr("0.0.0.0/0").value->prefix, 0u);
  EXPECT_EQ(explain_cidr("::/0").value->prefix, 0u);
  EXPECT_EQ(explain_cidr("fd00::/8").value->prefix, 8u);
  EXPECT_EQ(explain_cidr("10.1.2.3/32").value->prefix, 32u);
  EXPECT_EQ(explain_cidr("2001:db8::1/128").value->prefix, 128u);
}

TEST(Cidr, ExplainsEveryRejection) {
  struct bad {
    std::string_view text;
    std::string_view message;
  };
  const std::vector<bad> cases = {
      {"10.0.0.0/33", "has prefix length /33; expected a number from 0 to 32 for IPv4"},
      {"fd00::/129", "has prefix length /129; expected a number from 0 to 128 for IPv6"},
      {"10.0.0.0/", "has prefix length /; expected a number from 0 to 32 for IPv4"},
      {"10.0.0.0/-1", "has prefix length /-1; expected a number from 0 to 32 for IPv4"},
      {"10.0.0.0/8/8", "has prefix length /8/8; expected a number from 0 to 32 for IPv4"},
      {"10.0.0/8", "\"10.0.0\" is not an IPv4 or IPv6 address"},
      {"example.com/24", "\"example.com\" is not an IPv4 or IPv6 address"},
      {"", "\"\" is not an IPv4 or IPv6 address"},
      {"10.0.0.1/8", "has address bits set after the /8 prefix (did you mean \"10.0.0.0/8\"?)"},
      {"192.168.1.129/25", "has address bits set after the /25 prefix (did you mean \"192.168.1.128/25\"?)"},
      {"fd00::1/64", "has address bits set after the /64 prefix (did you mean \"fd00::/64\"?)"},
      {"10.0.0.0/08", "has prefix length /08; expected a number from 0 to 32 for IPv4"},
      {"fe80::1%eth0/64", "\"fe80::1%eth0\" has a zone id, which a range cannot have"},
  };
  for (const auto& c : cases) {
    auto r = explain_cidr(c.text);
    EXPECT_FALSE(r) << c.text;
    EXPECT_EQ(r.error, c.message) << c.text;
  }
}

TEST(HostNames, AcceptRfc1123NamesAndIpv4) {
  for (std::string_view ok :
       {"localhost", "acme.okta.com", "ACME.Okta.com", "a-b.c", "x1.y2", "10.0.0.1", "3com.example"}) {
    EXPECT_TRUE(is_host_name_or_ipv4(ok)) << ok;
  }
  const std::string long_label(64, 'a');
  for (std::string_view bad : {"", "-a.com", "a-.com", "a..b", "a.b.", ".a", "a_b.com", "a b", "10.0.0.256",
                               "1.2.3", "*.okta.com", "::1", "a.com:443"}) {
    EXPECT_FALSE(is_host_name_or_ipv4(bad)) << bad;
  }
  EXPECT_FALSE(is_host_name_or_ipv4(long_label + ".com"));
  EXPECT_TRUE(is_host_name_or_ipv4(std::string(63, 'a') + ".com"));
}

TEST(Endpoint, ParsesHostPortForms) {
  struct ok_case {
    std::string_view text;
    std::string host;
    std::uint16_t port;
  };
  const std::vector<ok_case> cases = {
      {"127.0.0.1:3128", "127.0.0.1", 3128},
      {"[::1]:9901", "::1", 9901},
      {"localhost:0", "localhost", 0},
      {"0.0.0.0:65535", "0.0.0.0", 65535},
      {"[::]:443", "::", 443},
      {"acme.okta.com:443", "acme.okta.com", 443},
  };
  for (const auto& c : cases) {
    auto ep = parse_endpoint(c.text);
    ASSERT_TRUE(ep) << c.text;
    EXPECT_EQ(ep->host, c.host);
    EXPECT_EQ(ep->port, c.port);
    EXPECT_EQ(ep->to_string(), c.text);
  }
}

TEST(Endpoint, ExplainsEveryRejection) {
  struct bad {
    std::string_view text;
    std::string_view message;
  };
  const std::vector<bad> cases = {
      {"", "is empty; expected HOST:PORT, e.g. \"127.0.0.1:3128\""},
      {"localhost", "has no port; expected HOST:PORT, e.g. \"127.0.0.1:3128\""},
      {"localhost:", "has port \"\", which is not a number from 0 to 65535"},
      {"localhost:65536", "has port \"65536\", which is not a number from 0 to 65535"},
      {"localhost:+80", "has port \"+80\", which is not a number from 0 to 65535"},
      {"localhost:http", "has port \"http\", which is not a number from 0 to 65535"},
      {"localhost:080000", "has port \"080000\", which is not a number from 0 to 65535"},
      {":3128",
       "has no host; write \"0.0.0.0:3128\" for every IPv4 interface or \"127.0.0.1:3128\" for "
       "this machine only"},
      {"::1:9901", "is not HOST:PORT; IPv6 addresses go in brackets, e.g. \"[::1]:3128\""},
      {"[::1:9901", "has no closing ']' after the IPv6 address"},
      {"[::1]", "has no port; expected [IPv6]:PORT, e.g. \"[::1]:3128\""},
      {"[::1]9901", "has \"9901\" after ']'; expected :PORT"},
      {"[127.0.0.1]:80", "has \"127.0.0.1\" in brackets, which is not an IPv6 address"},
      {"[]:80", "has \"\" in brackets, which is not an IPv6 address"},
      {"a b:80", "has host \"a b\", which is not a valid host name or IPv4 address"},
      {"http://x:80", "is a URL; expected only HOST:PORT, e.g. \"127.0.0.1:3128\""},
      {"300.1.1.1:80", "has host \"300.1.1.1\", which is not a valid host name or IPv4 address"},
  };
  for (const auto& c : cases) {
    auto r = explain_endpoint(c.text);
    EXPECT_FALSE(r) << c.text;
    EXPECT_EQ(r.error, c.message) << c.text;
    EXPECT_FALSE(parse_endpoint(c.text)) << c.text;
  }
}

TEST(HostPattern, ParsesNamesWildcardsPortsAndLiterals) {
  struct ok_case {
    std::string_view text;
    policy::host_pattern expected;
  };
  const std::vector<ok_case> cases = {
      {"acme.okta.com", {"acme.okta.com", false, std::nullopt}},
      {"*.okta.com", {"okta.com", true, std::nullopt}},
      {"*.OKTA.com:8443", {"okta.com", true, 8443}},
      {"Acme.Okta.Com:443", {"acme.okta.com", false, 443}},
      {"127.0.0.1:8443", {"127.0.0.1", false, 8443}},
      {"[::1]", {"::1", false, std::nullopt}},
      {"[::1]:443", {"::1", false, 443}},
      {"[::0:1]", {"::1", false, std::nullopt}},
      {"*.a.b.c", {"a.b.c", true, std::nullopt}},
  };
  for (const auto& c : cases) {
    auto p = explain_host_pattern(c.text);
    ASSERT_TRUE(p) << c.text;
    EXPECT_EQ(*p.value, c.expected) << c.text;
  }
}

TEST(HostPattern, ExplainsEveryRejection) {
  struct bad {
    std::string_view text;
    std::string_view message;
  };
  const std::vector<bad> cases = {
      {"*okta.com", "is not a host name or *.suffix wildcard"},
      {"*", "is not a host name or *.suffix wildcard"},
      {"*.", "is not a host name or *.suffix wildcard"},
      {"a.*.com", "is not a host name or *.suffix wildcard"},
      {"**.okta.com", "is not a host name or *.suffix wildcard"},
      {"https://acme.okta.com", "is a URL; expected only a host name, e.g. \"acme.okta.com\""},
      {"acme.okta.com/", "is not a host name or *.suffix wildcard"},
      {"*.10.0.0.1", "is a wildcard over IP addresses; a *. wildcard needs a DNS suffix"},
      {"acme.okta.com:0", "has port \"0\", which is not a number from 1 to 65535"},
      {"acme.okta.com:", "has port \"\", which is not a number from 1 to 65535"},
      {"acme.okta.com:99999", "has port \"99999\", which is not a number from 1 to 65535"},
      {"::1", "is not a host pattern; IPv6 addresses go in brackets, e.g. \"[::1]:443\""},
      {"[::1", "has no closing ']' after the IPv6 address"},
      {"[::1]443", "has \"443\" after ']'; expected :PORT"},
      {"[acme]", "has \"acme\" in brackets, which is not an IPv6 address"},
      {"", "is empty; expected a host name or *.suffix wildcard"},
      // refused by the runtime before the loader shared its parser
      {"*.com", "is a wildcard over a top-level domain; a *. wildcard needs two labels, e.g. \"*.okta.com\""},
      {"localhost", "names this machine (loopback); the sidecar never proxies to it"},
      {"*.localhost:443", "names this machine (loopback); the sidecar never proxies to it"},
      {"acme.0x7f", "is not a host name or *.suffix wildcard"},
      {"acme.okta.com:0443", "has port \"0443\", which is not a number from 1 to 65535"},
  };
  for (const auto& c : cases) {
    auto r = explain_host_pattern(c.text);
    EXPECT_FALSE(r) << c.text;
    EXPECT_EQ(r.error, c.message) << c.text;
  }
}

TEST(RedisUrl, ParsesEveryPart) {
  auto u = parse_redis_url("redis://localhost:6379");
  ASSERT_TRUE(u);
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->server, (endpoint{"localhost", 6379}));
  EXPECT_EQ(u->db, 0u);
  EXPECT_FALSE(u->password);

  u = parse_redis_url("rediss://sidecar:p%40ss%3Aw@[::1]:6380/3");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->user, "sidecar");
  EXPECT_EQ(u->password, "p@ss:w");
  EXPECT_EQ(u->server, (endpoint{"::1", 6380}));
  EXPECT_EQ(u->db, 3u);

  u = parse_redis_url("redis://:secret@10.0.0.5:6379/");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->user, "");
  EXPECT_EQ(u->password, "secret");
  EXPECT_EQ(u->db, 0u);
}

TEST(RedisUrl, ExplainsEveryRejection) {
  struct bad {
    std::string_view text;
    std::string_view message;
  };
  const std::string shape = " (expected redis://[user:password@]host:port[/db])";
  const std::vector<bad> cases = {
      {"localhost:6379", "does not start with redis:// or rediss://"},
      {"http://localhost:6379", "does not start with redis:// or rediss://"},
      {"redis://localhost", "has server \"localhost\", which is not HOST:PORT"},
      {"redis://localhost:0", "has port 0"},
      {"redis://localhost:6379/x", "has database \"x\", which is not a non-negative number"},
      {"redis://localhost:6379/-1", "has database \"-1\", which is not a non-negative number"},
      {"redis://localhost:6379/1/2", "has database \"1/2\", which is not a non-negative number"},
      {"redis://localhost:6379?db=1", "has a query or fragment, which is not supported"},
      {"redis://secret@localhost:6379", "has credentials without ':' (write user:password@ or :password@)"},
      {"redis://u:%zz@localhost:6379", "has a malformed %-escape in its credentials"},
      {"redis://u:%4@localhost:6379", "has a malformed %-escape in its credentials"},
      {"redis://", "has server \"\", which is not HOST:PORT"},
  };
  for (const auto& c : cases) {
    auto r = explain_redis_url(c.text);
    EXPECT_FALSE(r) << c.text;
    EXPECT_EQ(r.error, std::string(c.message) + shape) << c.text;
  }
}

TEST(RedisUrl, RedactsPasswordsOnly) {
  EXPECT_EQ(redact_redis_url("redis://user:hunter2@host:6379/1"), "redis://user:****@host:6379/1");
  EXPECT_EQ(redact_redis_url("rediss://:hunter2@host:6379"), "rediss://:****@host:6379");
  EXPECT_EQ(redact_redis_url("redis://hunter2@host:6379"), "redis://****@host:6379");
  EXPECT_EQ(redact_redis_url("redis://host:6379"), "redis://host:6379");
  EXPECT_EQ(redact_redis_url("not a url"), "not a url");
}

TEST(ClosestMatch, SuggestsPlausibleTyposOnly) {
  const std::vector<std::string_view> keys = {"resolve", "trust_file", "connect_timeout_ms",
                                              "max_connections_per_host"};
  EXPECT_EQ(closest_match("resolv", keys), "resolve");
  EXPECT_EQ(closest_match("resovle", keys), "resolve");  // transposition counts once
  EXPECT_EQ(closest_match("Resolve", keys), "resolve");
  EXPECT_EQ(closest_match("trust-file", keys), "trust_file");
  EXPECT_EQ(closest_match("connect_timeout", keys), "connect_timeout_ms");
  EXPECT_EQ(closest_match("max_connection_per_host", keys), "max_connections_per_host");
  EXPECT_EQ(closest_match("banana", keys), std::nullopt);
  EXPECT_EQ(closest_match("x", keys), std::nullopt);
  const std::vector<std::string_view> none;
  EXPECT_EQ(closest_match("resolve", none), std::nullopt);
  const std::vector<std::string_view> levels = {"trace", "debug", "info", "warn", "error"};
  EXPECT_EQ(closest_match("warning", levels), "warn");
  EXPECT_EQ(closest_match("INFO", levels), "info");
  EXPECT_EQ(closest_match("verbose", levels), std::nullopt);
}

}  // namespace
}  // namespace okta_sidecar::config
