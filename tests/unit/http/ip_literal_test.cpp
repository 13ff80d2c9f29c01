#include "okta_sidecar/http/ip_literal.hpp"

#include <gtest/gtest.h>

namespace okta_sidecar::http {
namespace {

struct ip_case {
  const char* text;
  const char* canonical;  // nullptr: rejected
};

TEST(ParseIp, Table) {
  const ip_case cases[] = {
      {"1.2.3.4", "1.2.3.4"},
      {"0.0.0.0", "0.0.0.0"},
      {"255.255.255.255", "255.255.255.255"},
      {"256.1.1.1", nullptr},
      {"01.2.3.4", nullptr},
      {"1.2.3", nullptr},
      {"1.2.3.4.5", nullptr},
      {"1..3.4", nullptr},
      {"1.2.3.4.", nullptr},
      {"0x7f.0.0.1", nullptr},
      {"2130706433", nullptr},
      {"+1.2.3.4", nullptr},
      {"::", "::"},
      {"::1", "::1"},
      {"1::", "1::"},
      {"2001:DB8:0:0:0:0:0:1", "2001:db8::1"},
      {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
      {"1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"},
      {"1:0:3:4:5:6:7:8", "1:0:3:4:5:6:7:8"},
      {"::ffff:1.2.3.4", "::ffff:102:304"},
      {"fe80::1%eth0", "fe80::1"},
      {"1:2:3:4:5:6:7:8:9", nullptr},
      {"1:2:3:4:5:6:7", nullptr},
      {":::", nullptr},
      {"1:::2", nullptr},
      {"1::2::3", nullptr},
      {":1::2", nullptr},
      {"1::2:", nullptr},
      {"12345::1", nullptr},
      {"g::1", nullptr},
      {"::1.2.3", nullptr},
      {"::1.2.3.4:5", nullptr},
      {"1.2.3.4%eth0", nullptr},
      {"fe80::1%", nullptr},
      {"-1.2.3.4", nullptr},
      {"1.2.3.", nullptr},
      {"1.2.3.4::", nullptr},
      {":1::", nullptr},
      {"12345::", nullptr},
      {"2001:db8::0:1", "2001:db8::1"},
      {"64:ff9b::192.0.2.33", "64:ff9b::c000:221"},
      {"1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"},
      {"::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"},
      {"", nullptr},
  };
  for (const auto& c : cases) {
    const auto ip = parse_ip(c.text);
    if (c.canonical == nullptr) {
      EXPECT_FALSE(ip) << c.text;
    } else {
      ASSERT_TRUE(ip) << c.text;
      EXPECT_EQ(ip->to_string(), c.canonical) << c.text;
    }
  }
}

TEST(UnmapV4, MappedBecomesV4) {
  EXPECT_EQ(unmap_v4(*parse_ip("::ffff:10.1.2.3")), *parse_ip("10.1.2.3"));
  EXPECT_EQ(unmap_v4(*parse_ip("::10.1.2.3")), *parse_ip("::10.1.2.3"));
  EXPECT_EQ(unmap_v4(*parse_ip("10.1.2.3")), *parse_ip("10.1.2.3"));
}

}  // namespace
}  // namespace okta_sidecar::http
