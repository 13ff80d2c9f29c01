#include "okta_sidecar/ratelimit/header_dialect.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "okta_sidecar/ratelimit/http_date.hpp"

namespace okta_sidecar::ratelimit {
namespace {

using std::chrono::hours;

// Okta's clock at the moment it answered; the local wall clock differs by `skew` per case.
constexpr std::int64_t okta_t = 1'700'000'000;
const time_point now = time_point{} + hours(5);

std::string date_at(std::int64_t epoch) { return format_http_date(epoch); }
std::string num(std::int64_t v) { return std::to_string(v); }

struct header_case {
  const char* name;
  std::vector<std::pair<std::string, std::string>> headers;
  duration skew;  // local wall clock minus Okta's clock
  observation expected;
};

// Builds the expected observation field by field, so each case states only what it checks.
struct expect {
  observation o;
  expect& kind(limit_kind k) {
    o.kind = k;
    return *this;
  }
  expect& limit(std::int64_t v) {
    o.limit = v;
    return *this;
  }
  expect& remaining(std::int64_t v) {
    o.remaining = v;
    return *this;
  }
  expect& reset(std::int64_t epoch, duration after_now) {
    o.reset_epoch = epoch;
    o.reset_at = now + after_now;
    return *this;
  }
  expect& retry_after(duration d) {
    o.retry_after = d;
    return *this;
  }
  expect& date(std::int64_t epoch) {
    o.server_date_epoch = epoch;
    return *this;
  }
  expect& garbage(int n) {
    o.garbage = n;
    return *this;
  }
  operator observation() const { return o; }  // NOLINT: table brevity
};

std::vector<std::pair<std::string, std::string>> okta_window(std::int64_t reset_in = 40) {
  return {{"X-Rate-Limit-Limit", "600"},
          {"X-Rate-Limit-Remaining", "599"},
          {"X-Rate-Limit-Reset", num(okta_t + reset_in)},
          {"Date", date_at(okta_t)}};
}

observation window_40s() {
  return expect{}
      .kind(limit_kind::window)
      .limit(600)
      .remaining(599)
      .reset(okta_t + 40, seconds(40))
      .date(okta_t);
}

const header_case cases[] = {
    {"NoHeaders", {}, {}, expect{}},
    {"UnrelatedHeadersOnly",
     {{"Content-Type", "application/json"}, {"X-Okta-Request-Id", "abc"}},
     {},
     expect{}},
    {"OktaWindowNoSkew", okta_window(), {}, window_40s()},
    // The local wall clock does not matter while Date is present.
    {"LocalAhead30s", okta_window(), seconds(30), window_40s()},
    {"LocalBehind30s", okta_window(), -seconds(30), window_40s()},
    {"LocalAheadOneHour", okta_window(), hours(1), window_40s()},
    {"LocalBehindOneHour", okta_window(), -hours(1), window_40s()},
    {"HeaderNamesAnyCase",
     {{"x-rate-limit-limit", "600"},
      {"X-RATE-LIMIT-REMAINING", "599"},
      {"x-Rate-limit-Reset", num(okta_t + 40)},
      {"date", date_at(okta_t)}},
     {},
     window_40s()},
    // Names of the right lengths that differ in one byte (the parser picks its candidate by
    // length): none is read.
    {"LookAlikeNamesIgnored",
     {{"X-Rate-Limit-Lemit", "600"},
      {"X-Rate-Limit-Resex", num(okta_t + 40)},
      {"X-Rate-Limit-Remainink", "599"},
      {"X\rRate-Limit-Limit", "600"},
      {"Retry_After", "5"},
      {"Dat\x05", date_at(okta_t)}},
     {},
     expect{}},
    {"ValuesWithSurroundingWhitespace",
     {{"X-Rate-Limit-Limit", " 600\t"},
      {"X-Rate-Limit-Remaining", "599 "},
      {"X-Rate-Limit-Reset", "\t" + num(okta_t + 40)},
      {"Date", " " + date_at(okta_t) + " "}},
     {},
     window_40s()},
    // Without Date the local wall clock is the only reference: its skew shows up.
    {"MissingDateNoSkew",
     {{"X-Rate-Limit-Limit", "600"},
      {"X-Rate-Limit-Remaining", "599"},
      {"X-Rate-Limit-Reset", num(okta_t + 40)}},
     {},
     expect{}.kind(limit_kind::window).limit(600).remaining(599).reset(okta_t + 40, seconds(40))},
    {"MissingDateLocalAhead30s",
     {{"X-Rate-Limit-Reset", num(okta_t + 40)}, {"X-Rate-Limit-Remaining", "3"}},
     seconds(30),
     expect{}.kind(limit_kind::window).remaining(3).reset(okta_t + 40, seconds(10))},
    {"MissingDateSubSecondWallClock",
     {{"X-Rate-Limit-Reset", num(okta_t + 40)}},
     milliseconds(500),
     expect{}.reset(okta_t + 40, milliseconds(39'500))},
    {"MissingDateLocalBehindOneHour",
     {{"X-Rate-Limit-Reset", num(okta_t + 40)}},
     -hours(1),
     expect{}.reset(okta_t + 40, seconds(3640))},
    {"ResetAlreadyPastMeansNow",
     okta_window(-5),
     {},
     expect{}.kind(limit_kind::window).limit(600).remaining(599).reset(okta_t - 5, {}).date(okta_t)},
    {"ResetOnlyIsNotAWindow",
     {{"X-Rate-Limit-Reset", num(okta_t + 40)}, {"Date", date_at(okta_t)}},
     {},
     expect{}.reset(okta_t + 40, seconds(40)).date(okta_t)},
    {"RemainingZeroIsStillWindow",
     {{"X-Rate-Limit-Limit", "600"}, {"X-Rate-Limit-Remaining", "0"}},
     {},
     expect{}.kind(limit_kind::window).limit(600).remaining(0)},
    // Okta's concurrent-request 429: Limit 0, Remaining 0, reset ~2 minutes ahead.
    {"ConcurrencyLimit",
     {{"X-Rate-Limit-Limit", "0"},
      {"X-Rate-Limit-Remaining", "0"},
      {"X-Rate-Limit-Reset", num(okta_t + 116)},
      {"Date", date_at(okta_t)}},
     hours(1),
     expect{}
         .kind(limit_kind::concurrency)
         .limit(0)
         .remaining(0)
         .reset(okta_t + 116, seconds(116))
         .date(okta_t)},
    {"LimitZeroWithRemainingIsWindow",
     {{"X-Rate-Limit-Limit", "0"}, {"X-Rate-Limit-Remaining", "5"}},
     {},
     expect{}.kind(limit_kind::window).limit(0).remaining(5)},
    // Repeated headers and comma-joined values (Okta has sent both): the minimum wins.
    {"RepeatedHeadersTakeMinimum",
     {{"X-Rate-Limit-Limit", "600"},
      {"X-Rate-Limit-Limit", "1200"},
      {"X-Rate-Limit-Remaining", "10"},
      {"X-Rate-Limit-Remaining", "5"},
      {"X-Rate-Limit-Remaining", "7"}},
     {},
     expect{}.kind(limit_kind::window).limit(600).remaining(5)},
    {"CommaJoinedValuesTakeMinimum",
     {{"X-Rate-Limit-Limit", "600, 600"},
      {"X-Rate-Limit-Remaining", "10,5"},
      {"X-Rate-Limit-Reset", num(okta_t + 50) + ", " + num(okta_t + 40)},
      {"Date", date_at(okta_t)}},
     {},
     expect{}.kind(limit_kind::window).limit(600).remaining(5).reset(okta_t + 40, seconds(40)).date(okta_t)},
    {"EmptyListElementsIgnored",
     {{"X-Rate-Limit-Remaining", "5,, 6,"}},
     {},
     expect{}.kind(limit_kind::window).remaining(5)},
    {"RepeatedDateTakesEarliest",
     {{"X-Rate-Limit-Reset", num(okta_t + 40)}, {"Date", date_at(okta_t + 1)}, {"Date", date_at(okta_t)}},
     {},
     expect{}.reset(okta_t + 40, seconds(40)).date(okta_t)},
    // Garbage is counted, never trusted.
    {"NonNumeric",
     {{"X-Rate-Limit-Limit", "lots"}, {"X-Rate-Limit-Remaining", "599"}},
     {},
     expect{}.kind(limit_kind::window).remaining(599).garbage(1)},
    {"Negative",
     {{"X-Rate-Limit-Limit", "600"}, {"X-Rate-Limit-Remaining", "-1"}},
     {},
     expect{}.kind(limit_kind::window).limit(600).garbage(1)},
    {"Fractional", {{"X-Rate-Limit-Remaining", "1.5"}}, {}, expect{}.garbage(1)},
    {"ExplicitPlusSign", {{"X-Rate-Limit-Remaining", "+5"}}, {}, expect{}.garbage(1)},
    {"Overflow", {{"X-Rate-Limit-Limit", "99999999999999999999"}}, {}, expect{}.garbage(1)},
    {"AbsurdLimit", {{"X-Rate-Limit-Limit", "20000000"}}, {}, expect{}.garbage(1)},
    // Around the plain-number reading's bound (18 digits) and the largest count kept.
    {"EighteenDigits", {{"X-Rate-Limit-Limit", "999999999999999999"}}, {}, expect{}.garbage(1)},
    {"NineteenDigits", {{"X-Rate-Limit-Limit", "1000000000000000000"}}, {}, expect{}.garbage(1)},
    {"LargestCount",
     {{"X-Rate-Limit-Limit", "10000000"}},
     {},
     expect{}.kind(limit_kind::window).limit(10'000'000)},
    {"LeadingZeros",
     {{"X-Rate-Limit-Remaining", "0042"}},
     {},
     expect{}.kind(limit_kind::window).remaining(42)},
    {"EmptyValue", {{"X-Rate-Limit-Limit", ""}, {"X-Rate-Limit-Remaining", " , "}}, {}, expect{}.garbage(2)},
    {"GarbageElementBesideGoodOne",
     {{"X-Rate-Limit-Remaining", "5, x"}},
     {},
     expect{}.kind(limit_kind::window).remaining(5).garbage(1)},
    {"ResetInMillisecondsIsAbsurd",
     {{"X-Rate-Limit-Reset", num((okta_t + 40) * 1000)}, {"Date", date_at(okta_t)}},
     {},
     expect{}.date(okta_t).garbage(1)},
    {"ResetMoreThanADayAheadIsAbsurd",
     {{"X-Rate-Limit-Reset", num(okta_t + 86'401)}, {"Date", date_at(okta_t)}},
     {},
     expect{}.date(okta_t).garbage(1)},
    {"ResetADayAheadIsAccepted",
     {{"X-Rate-Limit-Reset", num(okta_t + 86'400)}, {"Date", date_at(okta_t)}},
     {},
     expect{}.reset(okta_t + 86'400, seconds(86'400)).date(okta_t)},
    {"ResetZeroIsAbsurd",
     {{"X-Rate-Limit-Reset", "0"}, {"Date", date_at(okta_t)}},
     {},
     expect{}.date(okta_t).garbage(1)},
    {"BadDateFallsBackToWallClock",
     {{"X-Rate-Limit-Reset", num(okta_t + 40)}, {"Date", "yesterday"}},
     seconds(10),
     expect{}.reset(okta_t + 40, seconds(30)).garbage(1)},
    // Retry-After, RFC 9110 §10.2.3: delta-seconds or an HTTP-date (Date-corrected).
    {"RetryAfterSeconds", {{"Retry-After", "120"}}, {}, expect{}.retry_after(seconds(120))},
    {"RetryAfterZero", {{"Retry-After", "0"}}, {}, expect{}.retry_after(seconds(0))},
    {"RetryAfterRepeatedTakesMinimum",
     {{"Retry-After", "120"}, {"retry-after", "30, 60"}},
     {},
     expect{}.retry_after(seconds(30))},
    {"RetryAfterDateWithSkewedLocalClock",
     {{"Retry-After", date_at(okta_t + 90)}, {"Date", date_at(okta_t)}},
     hours(1),
     expect{}.retry_after(seconds(90)).date(okta_t)},
    {"RetryAfterDateWithoutDate",
     {{"Retry-After", date_at(okta_t + 90)}},
     seconds(10),
     expect{}.retry_after(seconds(80))},
    {"RetryAfterObsoleteDateForm",
     {{"Retry-After", "Tuesday, 14-Nov-23 22:14:00 GMT"}, {"Date", date_at(okta_t)}},
     {},
     expect{}.retry_after(seconds(40)).date(okta_t)},
    {"RetryAfterDateInPastIsNow",
     {{"Retry-After", date_at(okta_t - 30)}, {"Date", date_at(okta_t)}},
     {},
     expect{}.retry_after(seconds(0)).date(okta_t)},
    {"RetryAfterBothFormsTakeMinimum",
     {{"Retry-After", "120"}, {"Retry-After", date_at(okta_t + 90)}, {"Date", date_at(okta_t)}},
     {},
     expect{}.retry_after(seconds(90)).date(okta_t)},
    {"RetryAfterGarbage", {{"Retry-After", "soon"}}, {}, expect{}.garbage(1)},
    {"RetryAfterNegative", {{"Retry-After", "-5"}}, {}, expect{}.garbage(1)},
    {"RetryAfterMoreThanADay", {{"Retry-After", "86401"}}, {}, expect{}.garbage(1)},
    {"RetryAfterDateFarAway",
     {{"Retry-After", date_at(okta_t + 2 * 86'400)}, {"Date", date_at(okta_t)}},
     {},
     expect{}.date(okta_t).garbage(1)},
    {"RetryAfterBesideOktaWindow",
     {{"X-Rate-Limit-Limit", "600"},
      {"X-Rate-Limit-Remaining", "599"},
      {"X-Rate-Limit-Reset", num(okta_t + 40)},
      {"Date", date_at(okta_t)},
      {"Retry-After", "7"}},
     -seconds(30),
     expect{window_40s()}.retry_after(seconds(7))},
};

class ParseRateLimitHeaders : public ::testing::TestWithParam<header_case> {};

TEST_P(ParseRateLimitHeaders, Normalises) {
  const auto& c = GetParam();
  std::vector<header_view> views;
  for (const auto& [n, v] : c.headers) views.emplace_back(n, v);
  const wall_time wall_now =
      wall_time{std::chrono::duration_cast<wall_clock::duration>(seconds(okta_t) + c.skew)};
  const observation got = parse_rate_limit_headers(views, now, wall_now);
  EXPECT_EQ(got.kind, c.expected.kind);
  EXPECT_EQ(got.limit, c.expected.limit);
  EXPECT_EQ(got.remaining, c.expected.remaining);
  EXPECT_EQ(got.reset_epoch, c.expected.reset_epoch);
  EXPECT_EQ(got.reset_at, c.expected.reset_at);
  EXPECT_EQ(got.retry_after, c.expected.retry_after);
  EXPECT_EQ(got.server_date_epoch, c.expected.server_date_epoch);
  EXPECT_EQ(got.garbage, c.expected.garbage);
}

INSTANTIATE_TEST_SUITE_P(Cases, ParseRateLimitHeaders, ::testing::ValuesIn(cases),
                         [](const auto& info) { return std::string(info.param.name); });

// The host's offset bound from earlier responses places the reset to the millisecond; this
// response's Date alone would place it up to a second late.
class ParseWithOffsetBound : public ::testing::Test {
 protected:
  // Okta answered at okta_t + 0.7 (Date says okta_t); the local clock is 30 s behind Okta.
  const wall_time received{std::chrono::duration_cast<wall_clock::duration>(
      std::chrono::duration<double>(static_cast<double>(okta_t) + 0.7 - 30.0))};
  std::vector<std::pair<std::string, std::string>> headers{{"X-Rate-Limit-Limit", "100"},
                                                           {"X-Rate-Limit-Remaining", "0"},
                                                           {"X-Rate-Limit-Reset", num(okta_t + 10)},
                                                           {"Date", date_at(okta_t)}};
  observation parse(std::optional<double> bound) {
    std::vector<header_view> views;
    for (const auto& [n, v] : headers) views.emplace_back(n, v);
    return parse_rate_limit_headers(views, now, received, bound);
  }
};

TEST_F(ParseWithOffsetBound, WithoutABoundTheWholeSecondDateErrsLate) {
  EXPECT_EQ(parse(std::nullopt).reset_at, now + seconds(10));
}

TEST_F(ParseWithOffsetBound, ABoundFromEarlierResponsesPlacesTheResetPrecisely) {
  // Earlier responses showed okta - local >= 29.99 s: Okta's clock now reads >= okta_t + 0.69.
  const auto got = parse(29.99).reset_at;
  ASSERT_TRUE(got.has_value());
  EXPECT_NEAR(std::chrono::duration<double>(*got - now).count(), 9.31, 1e-3);
}

TEST_F(ParseWithOffsetBound, ThisResponsesOwnDateStillBoundsAWeakerEstimate) {
  // A bound below this Date's own (29.3 s) cannot move the reset later than Date does.
  EXPECT_EQ(parse(29.0).reset_at, now + seconds(10));
}

TEST_F(ParseWithOffsetBound, ABoundThatDisagreesWithDateIsIgnored) {
  // A clock was stepped since the bound was learned: Date decides.
  EXPECT_EQ(parse(35.0).reset_at, now + seconds(10));
  EXPECT_EQ(parse(20.0).reset_at, now + seconds(10));
}

}  // namespace
}  // namespace okta_sidecar::ratelimit
