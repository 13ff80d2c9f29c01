#include "okta_sidecar/http/hop_by_hop.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace okta_sidecar::http {
namespace {

using ::testing::Contains;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

std::vector<std::string> names(std::vector<header_view> h) { return hop_by_hop_names(h); }

TEST(HopByHop, FixedSetAlwaysPresent) {
  EXPECT_THAT(names({}), UnorderedElementsAre("connection", "proxy-connection", "keep-alive", "te", "trailer",
                                              "transfer-encoding", "upgrade", "proxy-authorization",
                                              "proxy-authenticate"));
}

TEST(HopByHop, ConnectionListedNamesLowerCasedAndDeduplicated) {
  const auto n = names({{"Connection", "X-Foo, Keep-Alive,x-foo"}, {"connection", " X-Bar\t"}});
  EXPECT_THAT(n, Contains("x-foo"));
  EXPECT_THAT(n, Contains("x-bar"));
  EXPECT_EQ(std::count(n.begin(), n.end(), "x-foo"), 1);
  EXPECT_EQ(std::count(n.begin(), n.end(), "keep-alive"), 1);
  EXPECT_EQ(n.size(), 11u);
}

TEST(HopByHop, HostAndContentLengthNeverRemoved) {
  const auto n = names({{"Connection", "Host, Content-Length, X-A"}});
  EXPECT_THAT(n, Not(Contains("host")));
  EXPECT_THAT(n, Not(Contains("content-length")));
  EXPECT_THAT(n, Contains("x-a"));
}

TEST(HopByHop, InvalidTokensAndEmptyElementsIgnored) {
  const auto n = names({{"Connection", ", ,x y,\"q\",ok"}});
  EXPECT_EQ(n.size(), 10u);
  EXPECT_THAT(n, Contains("ok"));
}

TEST(HopByHop, OnlyConnectionFieldIsRead) {
  EXPECT_EQ(names({{"X-Connection", "x-a"}, {"Proxy-Connection", "x-b"}}).size(), 9u);
}

struct close_case {
  const char* name;
  unsigned version;
  std::vector<header_view> headers;
  bool close;
};

TEST(WantsClose, Table) {
  const close_case cases[] = {
      {"Http11Default", 11, {}, false},
      {"Http11Close", 11, {{"Connection", "close"}}, true},
      {"Http11CloseMixedCase", 11, {{"connection", "Keep-Alive, CLOSE"}}, true},
      {"Http11CloseSecondField", 11, {{"Connection", "x-a"}, {"Connection", "close"}}, true},
      {"Http11ProxyConnectionClose", 11, {{"Proxy-Connection", "close"}}, true},
      {"Http11Closed", 11, {{"Connection", "closed"}}, false},
      {"Http10Default", 10, {}, true},
      {"Http10KeepAlive", 10, {{"Connection", "keep-alive"}}, false},
      {"Http10ProxyKeepAlive", 10, {{"Proxy-Connection", "Keep-Alive"}}, false},
      {"Http10KeepAliveAndClose", 10, {{"Connection", "keep-alive, close"}}, true},
  };
  for (const auto& c : cases) EXPECT_EQ(wants_close(c.version, c.headers), c.close) << c.name;
}

// connection_options answers as hop_by_hop_names() does, field by field, without allocating.
TEST(ConnectionOptions, AgreesWithHopByHopNames) {
  const std::vector<std::vector<header_view>> messages = {
      {},
      {{"Connection", "keep-alive"}},
      {{"Connection", "X-Foo, Keep-Alive,x-foo"}, {"connection", " X-Bar\t"}},
      {{"Connection", "Host, Content-Length, X-A"}},
      {{"Connection", ",, bad token, x@y, ,X-B"}},
      {{"Connection", "close"}, {"Connection", "TE, Upgrade, X-C"}},
  };
  const std::vector<std::string_view> probes = {"x-foo", "X-FOO",     "x-bar", "host", "content-length",
                                                "x-a",   "x-b",       "close", "te",   "x-c",
                                                "x-d",   "keep-alive"};
  for (const auto& m : messages) {
    connection_options listed;
    for (const auto& [name, value] : m) {
      if (iequals(name, "connection")) listed.add(value);
    }
    ASSERT_FALSE(listed.overflow());
    const auto all = hop_by_hop_names(m);
    for (auto p : probes) {
      const bool removed = std::find(all.begin(), all.end(), to_lower(p)) != all.end();
      EXPECT_EQ(removed, is_fixed_hop_by_hop(p) || listed.lists(p)) << p;
    }
  }
}

TEST(ConnectionOptions, TooManyNamesSaySo) {
  connection_options listed;
  listed.add("a1, a2, a3, a4, a5, a6, a7, a8");
  EXPECT_FALSE(listed.overflow());
  listed.add("a9");
  EXPECT_TRUE(listed.overflow());
  EXPECT_FALSE(listed.empty());
}

TEST(HopByHopSet, AgreesWithHopByHopNamesWithFewOrManyListed) {
  std::string many = "X-0";
  for (int i = 1; i < 12; ++i) many += ", X-" + std::to_string(i);
  const std::vector<std::vector<header_view>> messages = {
      {},
      {{"Connection", "keep-alive"}, {"X-Foo", "1"}},
      {{"Connection", "X-Foo, Keep-Alive"}, {"X-Foo", "1"}, {"connection", " X-Bar\t"}},
      {{"Connection", "Host, Content-Length, X-A"}},
      {{"Connection", many}},
  };
  const std::vector<std::string_view> probes = {"x-foo", "X-BAR", "host", "content-length", "x-a", "X-0",
                                                "x-11",  "x-12",  "te",   "Keep-Alive",     "Date"};
  for (const auto& m : messages) {
    const hop_by_hop_set hop(m);
    const auto all = hop_by_hop_names(m);
    for (auto p : probes) {
      const bool removed = std::find(all.begin(), all.end(), to_lower(p)) != all.end();
      EXPECT_EQ(hop.contains(p), removed) << p;
    }
  }
}

TEST(ConnectionOptions, OnlyFixedNamesLeaveItEmpty) {
  connection_options listed;
  listed.add("keep-alive, Upgrade, TE");
  EXPECT_TRUE(listed.empty());
}

}  // namespace
TEST(IsFixedHopByHop, EveryFixedNameInAnyCaseAndNothingElse) {
  for (const char* n : {"Connection", "proxy-connection", "KEEP-ALIVE", "te", "Trailer", "Transfer-Encoding",
                        "upgrade", "Proxy-Authorization", "proxy-authenticate"}) {
    EXPECT_TRUE(is_fixed_hop_by_hop(n)) << n;
  }
  for (const char* n : {"Host", "Content-Length", "Authorization", "Trailers", "te2", "", "X-Connection",
                        "tx", "Xrailer", "Keep-Alivf", "proxy-connectioN2", "Transfer-Encodinf",
                        "proxy-authenticatf", "Proxy-Authorizatioo"}) {
    EXPECT_FALSE(is_fixed_hop_by_hop(n)) << n;
  }
  // The same set hop_by_hop_names starts from.
  for (const auto& n : hop_by_hop_names({})) EXPECT_TRUE(is_fixed_hop_by_hop(n)) << n;
}

}  // namespace okta_sidecar::http
