#include "okta_sidecar/auth/base64url.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

namespace okta_sidecar::auth {
namespace {

TEST(Base64url, Table) {
  struct row {
    std::string_view in;
    std::optional<std::string> out;
  };
  const std::vector<row> rows = {
      {"", std::string("")},
      {"Zg", std::string("f")},  // RFC 4648 §10 vectors, unpadded
      {"Zm8", std::string("fo")},
      {"Zm9v", std::string("foo")},
      {"Zm9vYg", std::string("foob")},
      {"Zm9vYmE", std::string("fooba")},
      {"Zm9vYmFy", std::string("foobar")},
      {"Zg==", std::string("f")},  // padding tolerated
      {"Zm8=", std::string("fo")},
      {"-_8", std::string("\xfb\xff")},  // URL-safe alphabet
      {"+/8", std::nullopt},             // plain base64 alphabet refused
      {"Z", std::nullopt},               // one leftover character
      {"Zm9vY", std::nullopt},
      {"Zg=", std::nullopt},  // wrong padding length
      {"Zm 9v", std::nullopt},
      {"Zm9v\n", std::nullopt},
      {"eyJ!", std::nullopt},
  };
  for (const auto& r : rows) EXPECT_EQ(base64url_decode(r.in), r.out) << r.in;
}

}  // namespace
}  // namespace okta_sidecar::auth
