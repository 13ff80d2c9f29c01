#include "okta_sidecar/http/target.hpp"

#include <gtest/gtest.h>

#include "okta_sidecar/http/text.hpp"

namespace okta_sidecar::http {
namespace {

struct abs_case {
  const char* text;
  std::optional<parsed_target> want;
};

TEST(ParseAbsoluteForm, Table) {
  const abs_case cases[] = {
      {"http://acme.okta.com/api/v1/users?limit=2",
       parsed_target{"http", "acme.okta.com", 80, "/api/v1/users?limit=2"}},
      {"https://acme.okta.com/x", parsed_target{"https", "acme.okta.com", 443, "/x"}},
      {"HTTP://ACME.Okta.COM/Path", parsed_target{"http", "acme.okta.com", 80, "/Path"}},
      {"http://acme.okta.com", parsed_target{"http", "acme.okta.com", 80, "/"}},
      {"http://acme.okta.com?q=1", parsed_target{"http", "acme.okta.com", 80, "/?q=1"}},
      {"http://acme.okta.com:8080/", parsed_target{"http", "acme.okta.com", 8080, "/", true}},
      {"http://acme.okta.com:65535/", parsed_target{"http", "acme.okta.com", 65535, "/", true}},
      {"http://[2001:db8::1]:8080/x", parsed_target{"http", "2001:db8::1", 8080, "/x", true}},
      {"http://[2001:DB8:0:0::1]/", parsed_target{"http", "2001:db8::1", 80, "/"}},
      {"http://10.0.0.1/", parsed_target{"http", "10.0.0.1", 80, "/"}},
      {"http://user:pass@acme.okta.com/", std::nullopt},
      {"http://@acme.okta.com/", std::nullopt},
      {"http://acme.okta.com:0/", std::nullopt},
      {"http://acme.okta.com:65536/", std::nullopt},
      {"http://acme.okta.com:/", std::nullopt},
      {"http://acme.okta.com:08080/", std::nullopt},
      {"http://acme.okta.com:80a/", std::nullopt},
      {"http:///x", std::nullopt},
      {"http://acme.okta.com/x#frag", std::nullopt},
      {"http://acme.okta.com#frag", std::nullopt},
      {"http://acme%2eokta.com/", std::nullopt},
      {"http://[::1/", std::nullopt},
      {"http://[not-v6]/", std::nullopt},
      {"http://acme.okta.com/a b", std::nullopt},
      {"ftp://acme.okta.com/", std::nullopt},
      {"acme.okta.com/x", std::nullopt},
      {"//acme.okta.com/x", std::nullopt},
      {"", std::nullopt},
  };
  for (const auto& c : cases) EXPECT_EQ(parse_absolute_form(c.text), c.want) << c.text;
}

struct auth_case {
  const char* text;
  std::optional<std::pair<std::string, std::uint16_t>> want;
};

TEST(ParseAuthority, Table) {
  using hp = std::pair<std::string, std::uint16_t>;
  const auth_case cases[] = {
      {"acme.okta.com:443", hp{"acme.okta.com", 443}},
      {"ACME.okta.com:1", hp{"acme.okta.com", 1}},
      {"[::1]:443", hp{"::1", 443}},
      {"[2001:db8::1]:8443", hp{"2001:db8::1", 8443}},
      {"10.1.2.3:22", hp{"10.1.2.3", 22}},
      {"acme.okta.com", std::nullopt},
      {"acme.okta.com:", std::nullopt},
      {"acme.okta.com:0", std::nullopt},
      {"acme.okta.com:65536", std::nullopt},
      {"acme.okta.com:-1", std::nullopt},
      {"acme.okta.com:+443", std::nullopt},
      {"acme.okta.com:443:1", std::nullopt},
      {"user@acme.okta.com:443", std::nullopt},
      {"user:pw@acme.okta.com:443", std::nullopt},
      {"::1:443", std::nullopt},
      {"[::1]", std::nullopt},
      {"[::1]443", std::nullopt},
      {"[zz]:443", std::nullopt},
      {":443", std::nullopt},
      {"acme okta:443", std::nullopt},
      {"", std::nullopt},
  };
  for (const auto& c : cases) EXPECT_EQ(parse_authority(c.text), c.want) << c.text;
}

TEST(ParseHostHeader, OptionalPort) {
  EXPECT_EQ(parse_host_header("Acme.okta.com"), (host_and_port{"acme.okta.com", std::nullopt}));
  EXPECT_EQ(parse_host_header(" acme.okta.com:8443 "), (host_and_port{"acme.okta.com", 8443}));
  EXPECT_EQ(parse_host_header("[::1]"), (host_and_port{"::1", std::nullopt}));
  EXPECT_EQ(parse_host_header(""), std::nullopt);
  EXPECT_EQ(parse_host_header("a@b"), std::nullopt);
}

TEST(HostHeaderMatches, DefaultPortsAndCase) {
  const auto t = *parse_absolute_form("http://acme.okta.com/x");
  EXPECT_TRUE(host_header_matches("acme.okta.com", t));
  EXPECT_TRUE(host_header_matches("ACME.okta.com:80", t));
  EXPECT_FALSE(host_header_matches("acme.okta.com:443", t));
  EXPECT_FALSE(host_header_matches("evil.com", t));
  EXPECT_FALSE(host_header_matches("", t));
  const auto s = *parse_absolute_form("https://acme.okta.com:443/x");
  EXPECT_TRUE(host_header_matches("acme.okta.com", s));
  EXPECT_FALSE(host_header_matches("acme.okta.com:80", s));
}

TEST(IsValidOriginForm, Table) {
  EXPECT_TRUE(is_valid_origin_form("/"));
  EXPECT_TRUE(is_valid_origin_form("/a/b?c=d&e=%2F"));
  EXPECT_TRUE(is_valid_origin_form("/a?filter=profile.login+eq+%22x%22"));
  EXPECT_FALSE(is_valid_origin_form("a"));
  EXPECT_FALSE(is_valid_origin_form(""));
  EXPECT_FALSE(is_valid_origin_form("/%"));
  EXPECT_FALSE(is_valid_origin_form("/%g0"));
  EXPECT_FALSE(is_valid_origin_form("/\t"));
  EXPECT_FALSE(is_valid_origin_form("/\x7f"));
  EXPECT_FALSE(is_valid_origin_form("/abcdefgh/ijklmn\x80"));
  EXPECT_FALSE(is_valid_origin_form("/abcdefgh/ijklmn#"));
  EXPECT_FALSE(is_valid_origin_form("/abcdefgh/ijklmn%4"));
  EXPECT_TRUE(is_valid_origin_form("/abcdefgh/ijklmn%4a"));
}

// The byte-at-a-time definition the eight-at-a-time check must agree with.
bool reference_origin_form(std::string_view t) {
  if (t.empty() || t[0] != '/') return false;
  for (std::size_t i = 0; i < t.size(); ++i) {
    const auto u = static_cast<unsigned char>(t[i]);
    if (u <= 0x20 || u >= 0x7f || u == '#') return false;
    if (u == '%' && (i + 2 >= t.size() || !is_hex_digit(t[i + 1]) || !is_hex_digit(t[i + 2]))) return false;
  }
  return true;
}

TEST(IsValidOriginForm, AgreesWithTheByteWiseDefinitionForEveryByteAtEveryPosition) {
  for (const std::size_t len : {2u, 8u, 9u, 16u, 17u, 25u}) {
    for (std::size_t pos = 1; pos < len; ++pos) {
      for (int x = 0; x < 256; ++x) {
        for (const char fill : {'a', 'F', '%'}) {  // '%' fills: escapes whose digits the byte may break
          std::string t(len, fill == '%' ? '0' : fill);
          t[0] = '/';
          if (fill == '%') {
            for (std::size_t k = 1; k < len; k += 3) t[k] = '%';
          }
          t[pos] = static_cast<char>(x);
          ASSERT_EQ(is_valid_origin_form(t), reference_origin_form(t))
              << "len " << len << " pos " << pos << " byte " << x << " fill " << fill;
        }
      }
    }
  }
}

}  // namespace
}  // namespace okta_sidecar::http

namespace okta_sidecar::http {
namespace {

TEST(HostHeaderMatchesTunnel, SameHostAndAPortOnlyIfItIsTheConnectPort) {
  EXPECT_TRUE(host_header_matches_tunnel("acme.okta.com", "acme.okta.com", 443));
  EXPECT_TRUE(host_header_matches_tunnel(" ACME.okta.com:443 ", "acme.okta.com", 443));
  EXPECT_TRUE(host_header_matches_tunnel("acme.okta.com", "acme.okta.com", 8443));
  EXPECT_TRUE(host_header_matches_tunnel("acme.okta.com:8443", "acme.okta.com", 8443));
  EXPECT_FALSE(host_header_matches_tunnel("acme.okta.com:444", "acme.okta.com", 443));
  EXPECT_FALSE(host_header_matches_tunnel("acme.okta.com:80", "acme.okta.com", 443));
  EXPECT_FALSE(host_header_matches_tunnel("evil.example", "acme.okta.com", 443));
  EXPECT_FALSE(host_header_matches_tunnel("acme.okta.com.evil.example", "acme.okta.com", 443));
  EXPECT_FALSE(host_header_matches_tunnel("", "acme.okta.com", 443));
}

}  // namespace
}  // namespace okta_sidecar::http
