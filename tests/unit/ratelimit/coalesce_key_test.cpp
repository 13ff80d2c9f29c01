#include "okta_sidecar/ratelimit/coalesce_key.hpp"

#include <gtest/gtest.h>

namespace okta_sidecar::ratelimit {
namespace {

read_request get() {
  return read_request{
      "GET", "acme.okta.com", 443,  "/api/v1/users?limit=1", "cred-a", "application/json", "gzip",
      "en",  false,           false};
}

TEST(CoalesceKeyTest, IdenticalReadsShareAKey) {
  EXPECT_TRUE(coalesce_key(get()).has_value());
  EXPECT_EQ(coalesce_key(get()), coalesce_key(get()));
  auto head = get();
  head.method = "HEAD";
  EXPECT_TRUE(coalesce_key(head).has_value());
  EXPECT_NE(coalesce_key(head), coalesce_key(get()));
}

TEST(CoalesceKeyTest, NeverForOtherMethodsBodiesOrConditionalRequests) {
  for (const char* m : {"POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get"}) {
    auto r = get();
    r.method = m;
    EXPECT_FALSE(coalesce_key(r).has_value()) << m;
  }
  auto body = get();
  body.has_body = true;
  EXPECT_FALSE(coalesce_key(body).has_value());
  auto cond = get();
  cond.conditional_or_range = true;
  EXPECT_FALSE(coalesce_key(cond).has_value());
}

TEST(CoalesceKeyTest, EverythingThatChangesTheAnswerSeparatesKeys) {
  const auto base = *coalesce_key(get());
  auto differs = [&](auto change) {
    auto r = get();
    change(r);
    return *coalesce_key(r) != base;
  };
  EXPECT_TRUE(differs([](read_request& r) { r.credential_digest = "cred-b"; }));
  EXPECT_TRUE(differs([](read_request& r) { r.credential_digest = ""; }));
  EXPECT_TRUE(differs([](read_request& r) { r.host = "other.okta.com"; }));
  EXPECT_TRUE(differs([](read_request& r) { r.port = 8443; }));
  EXPECT_TRUE(differs([](read_request& r) { r.path_and_query = "/api/v1/users?limit=2"; }));
  EXPECT_TRUE(differs([](read_request& r) { r.accept = "*/*"; }));
  EXPECT_TRUE(differs([](read_request& r) { r.accept_encoding = ""; }));
  EXPECT_TRUE(differs([](read_request& r) { r.accept_language = "fr"; }));
  // No field can slide into its neighbour.
  auto a = get();
  a.accept = "x\n";
  a.accept_encoding = "";
  auto b = get();
  b.accept = "x";
  b.accept_encoding = "\n";
  EXPECT_NE(coalesce_key(a), coalesce_key(b));
}

}  // namespace
}  // namespace okta_sidecar::ratelimit
