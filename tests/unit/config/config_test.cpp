#include "okta_sidecar/config/config.hpp"

#include <gtest/gtest.h>

namespace okta_sidecar::config {
namespace {

TEST(Endpoint, ToStringBracketsIpv6) {
  EXPECT_EQ((endpoint{"127.0.0.1", 3128}).to_string(), "127.0.0.1:3128");
  EXPECT_EQ((endpoint{"::1", 9901}).to_string(), "[::1]:9901");
  EXPECT_EQ((endpoint{"acme.okta.com", 443}).to_string(), "acme.okta.com:443");
  EXPECT_EQ((endpoint{"0.0.0.0", 0}).to_string(), "0.0.0.0:0");
}

}  // namespace
}  // namespace okta_sidecar::config
