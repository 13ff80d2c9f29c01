#include "okta_sidecar/ratelimit/http_date.hpp"

#include <gtest/gtest.h>

namespace okta_sidecar::ratelimit {
namespace {

struct date_case {
  const char* text;
  std::optional<std::int64_t> epoch;
};

class ParseHttpDate : public ::testing::TestWithParam<date_case> {};

TEST_P(ParseHttpDate, Parses) {
  const auto& c = GetParam();
  EXPECT_EQ(parse_http_date(c.text), c.epoch) << '"' << c.text << '"';
}

// RFC 9110 §5.6.7's own example instant, 1994-11-06T08:49:37Z.
constexpr std::int64_t rfc_example = 784111777;

INSTANTIATE_TEST_SUITE_P(ValidForms, ParseHttpDate,
                         ::testing::Values(date_case{"Sun, 06 Nov 1994 08:49:37 GMT", rfc_example},
                                           date_case{"Sunday, 06-Nov-94 08:49:37 GMT", rfc_example},
                                           date_case{"Sun Nov  6 08:49:37 1994", rfc_example},
                                           date_case{"Wed Nov 16 08:49:37 1994", rfc_example + 10 * 86400},
                                           date_case{"Thu, 01 Jan 1970 00:00:00 GMT", 0},
                                           date_case{"Wed, 31 Dec 1969 23:59:59 GMT", -1},
                                           date_case{"Thu, 29 Feb 2024 12:00:00 GMT", 1709208000},
                                           date_case{"Tue, 14 Nov 2023 22:13:20 GMT", 1700000000},
                                           // Leap second: second 60 is allowed and lands on the next minute.
                                           date_case{"Sat, 31 Dec 2016 23:59:60 GMT", 1483228800},
                                           date_case{"Fri, 31 Dec 9999 23:59:59 GMT", 253402300799},
                                           // RFC 850 two-digit years: 70-99 are 19xx, 00-69 are 20xx.
                                           date_case{"Thursday, 01-Jan-70 00:00:00 GMT", 0},
                                           date_case{"Tuesday, 14-Nov-23 22:13:20 GMT", 1700000000},
                                           date_case{"Tuesday, 01-Jan-69 00:00:00 GMT", 3124224000},
                                           // The weekday is not cross-checked (robustness, RFC 9110 §5.6.7
                                           // only defines it as redundant).
                                           date_case{"Mon, 06 Nov 1994 08:49:37 GMT", rfc_example}));

INSTANTIATE_TEST_SUITE_P(Invalid, ParseHttpDate,
                         ::testing::Values(date_case{"", std::nullopt}, date_case{"1700000000", std::nullopt},
                                           date_case{"Sun, 06 Nov 1994 08:49:37 UTC", std::nullopt},
                                           date_case{"Sun, 06 Nov 1994 08:49:37 gmt", std::nullopt},
                                           date_case{"Sun, 6 Nov 1994 08:49:37 GMT", std::nullopt},
                                           date_case{"Sun, 06 Foo 1994 08:49:37 GMT", std::nullopt},
                                           date_case{"Sun, 06 nov 1994 08:49:37 GMT", std::nullopt},
                                           date_case{"sun, 06 Nov 1994 08:49:37 GMT", std::nullopt},
                                           date_case{"Xyz, 06 Nov 1994 08:49:37 GMT", std::nullopt},
                                           date_case{"Sun, 30 Feb 1994 08:49:37 GMT", std::nullopt},
                                           date_case{"Wed, 29 Feb 2023 08:49:37 GMT", std::nullopt},
                                           date_case{"Sun, 31 Apr 1994 08:49:37 GMT", std::nullopt},
                                           date_case{"Sun, 00 Nov 1994 08:49:37 GMT", std::nullopt},
                                           date_case{"Sun, 06 Nov 1994 24:00:00 GMT", std::nullopt},
                                           date_case{"Sun, 06 Nov 1994 08:60:00 GMT", std::nullopt},
                                           date_case{"Sun, 06 Nov 1994 08:49:61 GMT", std::nullopt},
                                           date_case{"Sun, 06 Nov 1994 8:49:37 GMT", std::nullopt},
                                           date_case{"Sun, 06 Nov 94 08:49:37 GMT", std::nullopt},
                                           date_case{"Sun, 06 Nov 1994 08:49:37 GMT ", std::nullopt},
                                           date_case{" Sun, 06 Nov 1994 08:49:37 GMT", std::nullopt},
                                           date_case{"Sun, 06 Nov 1994 08:49:37 GMT\r", std::nullopt},
                                           date_case{"Sun, 06 Nov 1994 08:49:37", std::nullopt},
                                           date_case{"Sunday, 06-Nov-1994 08:49:37 GMT", std::nullopt},
                                           date_case{"Sun, 06-Nov-94 08:49:37 GMT", std::nullopt},
                                           date_case{"Sunday, 06 Nov 1994 08:49:37 GMT", std::nullopt},
                                           date_case{"Sun Nov 6 08:49:37 1994", std::nullopt},
                                           date_case{"Sun Nov  6 08:49:37 94", std::nullopt},
                                           date_case{"Sun Nov 06 08:49:37 1994 GMT", std::nullopt},
                                           date_case{"Sun Nov 31 08:49:37 1994", std::nullopt},
                                           date_case{"2023-11-14T22:13:20Z", std::nullopt},
                                           // IMF-fixdate's length with one byte out of place
                                           date_case{"Sun,_06 Nov 1994 08:49:37 GMT", std::nullopt},
                                           date_case{"Sun, 06 Nov 1994 08-49:37 GMT", std::nullopt},
                                           date_case{"Sun, 06 Nov 1994 08:49:37GMT ", std::nullopt},
                                           date_case{"Sun, 06 Nov 1994 08:49:37 GMX", std::nullopt},
                                           date_case{"Sun, 0x Nov 1994 08:49:37 GMT", std::nullopt},
                                           date_case{"Sun, 06 Nov 19a4 08:49:37 GMT", std::nullopt}));

struct format_case {
  std::int64_t epoch;
  const char* text;
};

class FormatHttpDate : public ::testing::TestWithParam<format_case> {};

TEST_P(FormatHttpDate, FormatsImfFixdate) { EXPECT_EQ(format_http_date(GetParam().epoch), GetParam().text); }

INSTANTIATE_TEST_SUITE_P(Known, FormatHttpDate,
                         ::testing::Values(format_case{rfc_example, "Sun, 06 Nov 1994 08:49:37 GMT"},
                                           format_case{0, "Thu, 01 Jan 1970 00:00:00 GMT"},
                                           format_case{-1, "Wed, 31 Dec 1969 23:59:59 GMT"},
                                           format_case{1709208000, "Thu, 29 Feb 2024 12:00:00 GMT"},
                                           format_case{1700000000, "Tue, 14 Nov 2023 22:13:20 GMT"},
                                           format_case{253402300799, "Fri, 31 Dec 9999 23:59:59 GMT"}));

// The thread's last answer is kept for the same text: texts in turn, each its own answer.
TEST(HttpDate, TextsInTurnEachTheirOwn) {
  const std::string a = "Sun, 06 Nov 1994 08:49:37 GMT";
  const std::string b = "Sun, 06 Nov 1994 08:49:38 GMT";
  const std::string bad = "Sun, 06 Nov 1994 08:49:61 GMT";  // as long as a and b
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(parse_http_date(a), 784111777);
    EXPECT_EQ(parse_http_date(a), 784111777);
    EXPECT_EQ(parse_http_date(b), 784111778);
    EXPECT_EQ(parse_http_date(bad), std::nullopt);
    EXPECT_EQ(parse_http_date(""), std::nullopt);
    EXPECT_EQ(parse_http_date(std::string_view{}), std::nullopt);             // no data at all
    EXPECT_EQ(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);  // longer than the memo
  }
}

TEST(HttpDate, RoundTripsAcrossCenturies) {
  // A step that is not a multiple of a day or an hour visits every weekday, month and time.
  for (std::int64_t t = -2'208'988'800; t < 4'102'444'800; t += 7'654'321) {
    const auto text = format_http_date(t);
    ASSERT_EQ(parse_http_date(text), t) << text;
  }
}

}  // namespace
}  // namespace okta_sidecar::ratelimit
