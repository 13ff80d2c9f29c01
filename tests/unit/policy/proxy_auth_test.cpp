#include "okta_sidecar/policy/proxy_auth.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace okta_sidecar::policy {
namespace {

// base64("alice:s3cret") and friends, computed with `printf %s alice:s3cret | base64`.
constexpr const char* alice = "YWxpY2U6czNjcmV0";              // alice:s3cret
constexpr const char* bob_colon = "Ym9iOnB3OndpdGg6Y29sb25z";  // bob:pw:with:colons
constexpr const char* alice_wrong = "YWxpY2U6czNjcmV1";        // alice:s3creu
constexpr const char* alice_prefix = "YWxpY2U6czNjcmU=";       // alice:s3cre

proxy_auth two_users() {
  return proxy_auth::from_lines("# proxy users\n\nalice:s3cret\r\n  bob:pw:with:colons  \n# end");
}

TEST(ProxyAuth, DefaultIsDisabledAndFailsClosed) {
  const proxy_auth a;
  EXPECT_FALSE(a.enabled());
  EXPECT_FALSE(a.check(std::string("Basic ") + alice));
}

struct check_case {
  std::string value;
  bool ok;
};

TEST(ProxyAuth, CheckTable) {
  const auto a = two_users();
  ASSERT_TRUE(a.enabled());
  const check_case cases[] = {
      {std::string("Basic ") + alice, true},
      {std::string("basic ") + alice, true},
      {std::string("BASIC ") + alice, true},
      {std::string("Basic   ") + alice, true},
      {std::string(" Basic ") + alice + " ", true},
      {std::string("Basic ") + bob_colon, true},
      {std::string("Basic ") + alice_wrong, false},
      {std::string("Basic ") + alice_prefix, false},
      {std::string("Basic ") + alice + "AA", false},
      {std::string("Basic ") + alice + "=", false},           // padding where none belongs
      {std::string("Basic ") + "YWxpY2U6czNjcmV0!!", false},  // not base64
      {std::string("Basic ") + "YWxpY2U6czNjcmV0A", false},   // length 4n+1
      {std::string("Basic ") + "YWxpY2U6czNjcmU", false},     // unpadded "alice:s3cre"
      {std::string("Bearer ") + alice, false},
      {std::string("Basic") + alice, false},
      {std::string("Basic\t") + alice, false},
      {alice, false},
      {"", false},
      {"Basic ", false},
      {"Basic =", false},
      {std::string("Basic ") + std::string(5000, 'A'), false},
  };
  for (const auto& c : cases) EXPECT_EQ(a.check(c.value), c.ok) << c.value;
}

TEST(ProxyAuth, AuthenticateNamesTheUser) {
  const auto a = two_users();
  EXPECT_EQ(a.authenticate(std::string("Basic ") + alice), "alice");
  EXPECT_EQ(a.authenticate(std::string("Basic ") + bob_colon), "bob");
  EXPECT_EQ(a.authenticate(std::string("Basic ") + alice_wrong), std::nullopt);
}

TEST(ProxyAuth, MalformedLinesThrowWithLineNumberButNoSecret) {
  struct bad_case {
    const char* text;
    const char* line;
  };
  for (const auto& c : {bad_case{"alice:s3cret\nnocolonhere\n", "line 2"}, bad_case{":pw", "line 1"},
                        bad_case{"# c\nalice:", "line 2"}, bad_case{"alice:a\nalice:b", "line 2"},
                        bad_case{"alice:pa\x01ss", "line 1"}}) {
    try {
      proxy_auth::from_lines(c.text);
      ADD_FAILURE() << "accepted " << c.text;
    } catch (const std::runtime_error& e) {
      EXPECT_THAT(e.what(), ::testing::HasSubstr(c.line)) << c.text;
      EXPECT_THAT(e.what(), ::testing::Not(::testing::HasSubstr("pw"))) << e.what();
      EXPECT_THAT(e.what(), ::testing::Not(::testing::HasSubstr("nocolonhere"))) << e.what();
    }
  }
}

TEST(ProxyAuth, NoCredentialsIsAnError) {
  EXPECT_THROW(proxy_auth::from_lines(""), std::runtime_error);
  EXPECT_THROW(proxy_auth::from_lines("# only a comment\n\n"), std::runtime_error);
}

TEST(ProxyAuth, SingleEnvStyleValue) {
  const auto a = proxy_auth::from_lines("svc:token-123");
  EXPECT_TRUE(a.check("Basic c3ZjOnRva2VuLTEyMw=="));
}

TEST(ConstantTimeEqual, Table) {
  EXPECT_TRUE(constant_time_equal("alice:s3cret", "alice:s3cret"));
  EXPECT_FALSE(constant_time_equal("alice:s3cre", "alice:s3cret"));               // prefix
  EXPECT_FALSE(constant_time_equal("alice:s3cretX", "alice:s3cret"));             // extension
  EXPECT_FALSE(constant_time_equal("alice:s3cretalice:s3cret", "alice:s3cret"));  // repetition
  EXPECT_FALSE(constant_time_equal("Alice:s3cret", "alice:s3cret"));              // first byte
  EXPECT_FALSE(constant_time_equal("alice:s3creT", "alice:s3cret"));              // last byte
  EXPECT_FALSE(constant_time_equal("", "alice:s3cret"));
  EXPECT_FALSE(constant_time_equal("a", ""));
  EXPECT_TRUE(constant_time_equal("", ""));
}

TEST(DecodeBase64, Table) {
  EXPECT_EQ(decode_base64(""), "");
  EXPECT_EQ(decode_base64("YQ=="), "a");
  EXPECT_EQ(decode_base64("YQ"), "a");
  EXPECT_EQ(decode_base64("YWI="), "ab");
  EXPECT_EQ(decode_base64("YWJj"), "abc");
  EXPECT_EQ(decode_base64("YR=="), std::nullopt);  // non-zero leftover bits
  EXPECT_EQ(decode_base64("Y==="), std::nullopt);
  EXPECT_EQ(decode_base64("YQ="), std::nullopt);
  EXPECT_EQ(decode_base64("Y"), std::nullopt);
  EXPECT_EQ(decode_base64("YW-j"), std::nullopt);  // base64url alphabet is not Basic's
  EXPECT_EQ(decode_base64("YW J"), std::nullopt);
}

}  // namespace
}  // namespace okta_sidecar::policy
