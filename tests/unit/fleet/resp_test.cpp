// RESP framing through hiredis: what the fleet service writes and how replies are read back,
// including replies split across reads (pipelined answers arrive in arbitrary chunks).
#include <gtest/gtest.h>

#include "okta_sidecar/fleet/redis_connection.hpp"

namespace okta_sidecar::fleet {
namespace {

TEST(RespTest, FormatsBinarySafeArguments) {
  EXPECT_EQ(format_command({"GET", "k"}), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
  const std::string with_nul("a\0b", 3);
  EXPECT_EQ(format_command({"SET", "k", with_nul}),
            std::string("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\na\0b\r\n", 29));
  EXPECT_EQ(format_command({"X", ""}), "*2\r\n$1\r\nX\r\n$0\r\n\r\n");
}

TEST(RespTest, ReadsEveryReplyTypeFedByteByByte) {
  const std::string wire =
      "+OK\r\n-NOSCRIPT No matching "
      "script\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*3\r\n:1\r\n:-1\r\n*1\r\n$0\r\n\r\n";
  resp_reader r;
  std::vector<redis_value> got;
  for (char c : wire) {
    ASSERT_TRUE(r.feed(&c, 1));
    while (auto v = r.next()) got.push_back(std::move(*v));
  }
  ASSERT_EQ(got.size(), 6u);
  EXPECT_EQ(got[0].kind, redis_value::type::status);
  EXPECT_EQ(got[0].str, "OK");
  EXPECT_TRUE(got[1].is_error());
  EXPECT_TRUE(got[1].str.starts_with("NOSCRIPT"));
  EXPECT_EQ(got[2].integer, 42);
  EXPECT_EQ(got[3].str, "hello");
  EXPECT_EQ(got[4].kind, redis_value::type::nil);
  ASSERT_EQ(got[5].elements.size(), 3u);
  EXPECT_EQ(got[5].elements[1].integer, -1);
  EXPECT_EQ(got[5].elements[2].elements.at(0).str, "");
  EXPECT_FALSE(r.failed());
}

TEST(RespTest, ProtocolGarbageFailsTheReader) {
  resp_reader r;
  r.feed("?what\r\n", 7);
  EXPECT_FALSE(r.next());
  EXPECT_TRUE(r.failed());
}

}  // namespace
}  // namespace okta_sidecar::fleet
