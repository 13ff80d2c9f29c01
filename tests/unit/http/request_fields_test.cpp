#include "okta_sidecar/http/request_fields.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace okta_sidecar::http {
namespace {

request_fields read(const std::vector<header_view>& h) { return read_request_fields(h); }

TEST(RequestFields, EachNameReadInAnyCase) {
  const auto f = read({{"HOST", "a.okta.com"},
                       {"authorization", "SSWS t"},
                       {"Proxy-Authorization", "Basic x"},
                       {"EXPECT", "100-continue"},
                       {"TraceParent", "00-abc"},
                       {"x-okta-sidecar-max-wait-ms", "250"},
                       {"X-OKTA-RETRY-COUNT", "2"},
                       {"Cookie", "sid=1"},
                       {"Accept", "application/json"},
                       {"accept-encoding", "gzip"},
                       {"Accept-Language", "en"},
                       {"Cache-Control", "no-cache"},
                       {"Pragma", "no-cache"},
                       {"X-Okta-Retry-For", "req1"}});
  EXPECT_TRUE(f.has_host());
  EXPECT_EQ(f.host, "a.okta.com");
  EXPECT_EQ(f.authorization, "SSWS t");
  EXPECT_EQ(f.proxy_authorization, "Basic x");
  EXPECT_EQ(f.expect, "100-continue");
  EXPECT_EQ(f.traceparent, "00-abc");
  EXPECT_EQ(f.max_wait, "250");
  EXPECT_EQ(f.retry_count, "2");
  EXPECT_EQ(f.cookie, "sid=1");
  EXPECT_EQ(f.accept, "application/json");
  EXPECT_EQ(f.accept_encoding, "gzip");
  EXPECT_EQ(f.accept_language, "en");
  EXPECT_EQ(f.cache_control, "no-cache");
  EXPECT_EQ(f.pragma, "no-cache");
  EXPECT_TRUE(f.has_retry_for);
  EXPECT_FALSE(f.conditional);
}

TEST(RequestFields, NoneOfThemLeavesAllEmpty) {
  const auto f =
      read({{"User-Agent", "curl"}, {"X-Authorization", "no"}, {"Hosts", "x"}, {"Content-Length", "3"}});
  EXPECT_FALSE(f.has_host());
  EXPECT_TRUE(f.host.empty());
  EXPECT_TRUE(f.authorization.empty());
  EXPECT_FALSE(f.has_retry_for);
  EXPECT_FALSE(f.conditional);
  EXPECT_FALSE(f.connection_close);
  EXPECT_FALSE(f.connection_keep_alive);
}

// As a lookup by name: the first field of a name, even when its value is empty.
TEST(RequestFields, FirstFieldOfANameWins) {
  const auto f =
      read({{"Authorization", ""}, {"Authorization", "SSWS second"}, {"Host", "a"}, {"host", "b"}});
  EXPECT_TRUE(f.authorization.empty());
  EXPECT_EQ(f.host, "a");
  const auto g = read({{"Cookie", "a=1"}, {"Cookie", "b=2"}});
  EXPECT_EQ(g.cookie, "a=1");
}

TEST(RequestFields, HostPresentWithAnEmptyValue) {
  const auto f = read({{"Host", ""}});
  EXPECT_TRUE(f.has_host());
  EXPECT_TRUE(f.host.empty());
}

TEST(RequestFields, ConditionalByAnyPrecondition) {
  for (const char* name :
       {"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"}) {
    EXPECT_TRUE(read({{name, "x"}}).conditional) << name;
  }
}

TEST(RequestFields, KeepAliveByVersionAndConnection) {
  EXPECT_TRUE(read({}).keep_alive(11));
  EXPECT_FALSE(read({}).keep_alive(10));
  EXPECT_FALSE(read({{"Connection", "close"}}).keep_alive(11));
  EXPECT_TRUE(read({{"Connection", "Keep-Alive"}}).keep_alive(10));
  EXPECT_TRUE(read({{"Connection", "keep-alive"}}).keep_alive(11));
  EXPECT_FALSE(read({{"connection", "x-foo, CLOSE"}}).keep_alive(11));
  // Every Connection field counts: they are one list (RFC 9110 §5.3).
  EXPECT_FALSE(read({{"Connection", "x-foo"}, {"Connection", "close"}}).keep_alive(11));
  EXPECT_FALSE(read({{"Connection", "keep-alive, close"}}).keep_alive(10));
  // An option that only contains the word is not it.
  EXPECT_TRUE(read({{"Connection", "closed"}}).keep_alive(11));
  EXPECT_FALSE(read({{"Connection", "keep-alives"}}).keep_alive(10));
}

}  // namespace
}  // namespace okta_sidecar::http
