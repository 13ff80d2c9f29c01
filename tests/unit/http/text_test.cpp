#include "okta_sidecar/http/text.hpp"

#include <gtest/gtest.h>

#include <string>

namespace okta_sidecar::http {
namespace {

// The byte-at-a-time definitions the eight-at-a-time versions must agree with.
bool reference_iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

bool reference_field_value(std::string_view s) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) return false;
  }
  return true;
}

TEST(TextTest, IequalsAgreesWithTheByteWiseDefinitionForEveryBytePairAtEveryPosition) {
  // Lengths below, at and above one word, and with a partial last word; the pair placed in
  // every position, the rest letters of both cases so the word compares go the slow way too.
  for (const std::size_t len : {1u, 7u, 8u, 9u, 15u, 16u, 19u}) {
    const std::string base_a = std::string("aBcDeFgHiJkLmNoPqRsT").substr(0, len);
    const std::string base_b = std::string("AbCdEfGhIjKlMnOpQrSt").substr(0, len);
    for (std::size_t pos = 0; pos < len; ++pos) {
      for (int x = 0; x < 256; ++x) {
        for (int y = 0; y < 256; ++y) {
          std::string a = base_a, b = base_b;
          a[pos] = static_cast<char>(x);
          b[pos] = static_cast<char>(y);
          ASSERT_EQ(iequals(a, b), reference_iequals(a, b))
              << "len " << len << " pos " << pos << " bytes " << x << ", " << y;
        }
      }
    }
  }
}

bool reference_token(std::string_view s) {
  for (const char c : s) {
    if (!is_tchar(c)) return false;
  }
  return !s.empty();
}

TEST(TextTest, IsTokenAgreesWithTheByteWiseDefinitionForEveryByteAtEveryPosition) {
  for (const std::size_t len : {1u, 7u, 8u, 9u, 15u, 16u, 18u, 23u}) {
    for (std::size_t pos = 0; pos < len; ++pos) {
      for (int x = 0; x < 256; ++x) {
        for (const std::string_view fill : {"X-Rate-Limit-Reset-Z9", "-!#$%&'*+.^_`|~aA0z-Z"}) {
          std::string s(fill.substr(0, len));
          s.resize(len, '-');
          s[pos] = static_cast<char>(x);
          ASSERT_EQ(is_token(s), reference_token(s)) << "len " << len << " pos " << pos << " byte " << x;
        }
      }
    }
  }
  EXPECT_FALSE(is_token(""));
}

TEST(TextTest, IequalsOfHeaderNames) {
  EXPECT_TRUE(iequals("Content-Length", "content-length"));
  EXPECT_TRUE(iequals("TRANSFER-ENCODING", "transfer-encoding"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("Content-Length", "content-lengtH "));
  EXPECT_FALSE(iequals("Content-Lengtx", "content-length"));
  EXPECT_FALSE(iequals("[onnection", "{onnection"));        // 0x5b and 0x7b: no case
  EXPECT_FALSE(iequals("@onnection", "`onnection"));        // 0x40 and 0x60: no case
  EXPECT_FALSE(iequals("\xc3onnection", "\xe3onnection"));  // obs-text has no case either
}

TEST(TextTest, IsFieldValueAgreesWithTheByteWiseDefinitionForEveryByteAtEveryPosition) {
  for (const std::size_t len : {1u, 7u, 8u, 9u, 16u, 23u}) {
    for (std::size_t pos = 0; pos < len; ++pos) {
      for (int x = 0; x < 256; ++x) {
        std::string s(len, 'v');
        s[pos] = static_cast<char>(x);
        ASSERT_EQ(is_field_value(s), reference_field_value(s))
            << "len " << len << " pos " << pos << " byte " << x;
        s.assign(len, '\xff');  // obs-text around it: high bits must not hide or fake a control byte
        s[pos] = static_cast<char>(x);
        ASSERT_EQ(is_field_value(s), reference_field_value(s))
            << "len " << len << " pos " << pos << " byte " << x;
      }
    }
  }
  EXPECT_TRUE(is_field_value(""));
  EXPECT_TRUE(is_field_value("application/json; charset=UTF-8\tand more"));
  EXPECT_FALSE(is_field_value("1234567\r\n"));
}

// The word tests must say no for ordinary text, or every word takes the byte-wise way (still
// right, only slow: the comparisons with the byte-wise definitions cannot see that).
TEST(TextTest, WordTestsPassOrdinaryTextAndCatchEachOddByte) {
  const std::string_view path = "/api/v1/users/00u1a2b3c4d5e6f7?limit=200&after=Zz~_-.";
  const std::string_view value = "Mon, 07 Dec 2026 10:00:00 GMT; q=0.9, \"x\" caf\xc3\xa9";
  for (std::size_t i = 0; i + 8 <= path.size(); ++i)
    EXPECT_FALSE(swar::maybe_not_plain_path(swar::load(&path[i]))) << i;
  for (std::size_t i = 0; i + 8 <= value.size(); ++i)
    EXPECT_FALSE(swar::maybe_ctl(swar::load(&value[i]))) << i;
  for (const char odd : {'\0', ' ', '\x7f', '\x80', '#', '%'}) {
    for (std::size_t i = 0; i < 8; ++i) {
      std::string s = "abcdefgh";
      s[i] = odd;
      EXPECT_TRUE(swar::maybe_not_plain_path(swar::load(s.data()))) << static_cast<int>(odd) << " at " << i;
    }
  }
  for (const char odd : {'\0', '\t', '\r', '\n', '\x1f', '\x7f'}) {
    for (std::size_t i = 0; i < 8; ++i) {
      std::string s = "abcdefgh";
      s[i] = odd;
      EXPECT_TRUE(swar::maybe_ctl(swar::load(s.data()))) << static_cast<int>(odd) << " at " << i;
    }
  }
  EXPECT_EQ(swar::ascii_lower(swar::load("AbCz@[`{")), swar::load("abcz@[`{"));
}

TEST(TextTest, TrimOws) {
  EXPECT_EQ(trim_ows(" \t a b \t "), "a b");
  EXPECT_EQ(trim_ows(" \t "), "");
  EXPECT_EQ(trim_ows(""), "");
  static_assert(trim_ows("  x ") == "x");
}

}  // namespace
}  // namespace okta_sidecar::http
