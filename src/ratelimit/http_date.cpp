#include "okta_sidecar/ratelimit/http_date.hpp"

#include <array>
#include <chrono>
#include <cstdio>

namespace okta_sidecar::ratelimit {
namespace {

constexpr std::array<std::string_view, 7> short_days = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 7> long_days = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                       "Thursday", "Friday", "Saturday"};
constexpr std::array<std::string_view, 12> months = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// A tiny cursor over the input: every form is fixed-layout, so each step either consumes
// exactly what the grammar asks for or the whole parse fails.
class cursor {
 public:
  explicit cursor(std::string_view s) : s_(s) {}
  bool literal(std::string_view lit) {
    if (s_.substr(pos_, lit.size()) != lit) return false;
    pos_ += lit.size();
    return true;
  }
  template <std::size_t N>
  bool one_of(const std::array<std::string_view, N>& names, int& index) {
    for (std::size_t i = 0; i < N; ++i) {
      if (literal(names[i])) {
        index = static_cast<int>(i);
        return true;
      }
    }
    return false;
  }
  bool digits(int count, int& value) {
    if (pos_ + static_cast<std::size_t>(count) > s_.size()) return false;
    value = 0;
    for (int i = 0; i < count; ++i) {
      const char c = s_[pos_ + static_cast<std::size_t>(i)];
      if (c < '0' || c > '9') return false;
      value = value * 10 + (c - '0');
    }
    pos_ += static_cast<std::size_t>(count);
    return true;
  }
  bool at_end() const { return pos_ == s_.size(); }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

struct fields {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
};

// time-of-day = hour ":" minute ":" second (RFC 9110 §5.6.7); second 60 is a leap second.
bool time_of_day(cursor& c, fields& f) {
  return c.digits(2, f.hour) && c.literal(":") && c.digits(2, f.minute) && c.literal(":") &&
         c.digits(2, f.second) && f.hour <= 23 && f.minute <= 59 && f.second <= 60;
}

std::optional<std::int64_t> to_epoch(const fields& f) {
  using namespace std::chrono;
  const year_month_day ymd{year{f.year}, month{static_cast<unsigned>(f.month)},
                           day{static_cast<unsigned>(f.day)}};
  if (!ymd.ok()) return std::nullopt;  // 30 Feb, 31 Apr, 29 Feb of a common year...
  const auto days = sys_days{ymd}.time_since_epoch().count();
  return static_cast<std::int64_t>(days) * 86400 + f.hour * 3600 + f.minute * 60 + f.second;
}

// IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
std::optional<std::int64_t> imf_fixdate(std::string_view s) {
  cursor c{s};
  fields f;
  int ignored = 0;
  if (!(c.one_of(short_days, ignored) && c.literal(", ") && c.digits(2, f.day) && c.literal(" ") &&
        c.one_of(months, f.month) && c.literal(" ") && c.digits(4, f.year) && c.literal(" ") &&
        time_of_day(c, f) && c.literal(" GMT") && c.at_end()))
    return std::nullopt;
  f.month += 1;
  return to_epoch(f);
}

// Obsolete RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT". A two-digit year is read as 1970-2069:
// RFC 9110 §5.6.7 asks for "not more than 50 years in the future" relative to now, but this
// function takes no clock; the fixed pivot agrees with it for every date a server sends today.
std::optional<std::int64_t> rfc850_date(std::string_view s) {
  cursor c{s};
  fields f;
  int ignored = 0;
  if (!(c.one_of(long_days, ignored) && c.literal(", ") && c.digits(2, f.day) && c.literal("-") &&
        c.one_of(months, f.month) && c.literal("-") && c.digits(2, f.year) && c.literal(" ") &&
        time_of_day(c, f) && c.literal(" GMT") && c.at_end()))
    return std::nullopt;
  f.month += 1;
  f.year += f.year < 70 ? 2000 : 1900;
  return to_epoch(f);
}

// asctime: "Sun Nov  6 08:49:37 1994" (day is 2DIGIT or SP 1DIGIT).
std::optional<std::int64_t> asctime_date(std::string_view s) {
  cursor c{s};
  fields f;
  int ignored = 0;
  if (!(c.one_of(short_days, ignored) && c.literal(" ") && c.one_of(months, f.month) && c.literal(" ")))
    return std::nullopt;
  if (c.literal(" ")) {
    if (!c.digits(1, f.day)) return std::nullopt;
  } else if (!c.digits(2, f.day)) {
    return std::nullopt;
  }
  if (!(c.literal(" ") && time_of_day(c, f) && c.literal(" ") && c.digits(4, f.year) && c.at_end()))
    return std::nullopt;
  f.month += 1;
  return to_epoch(f);
}

}  // namespace

std::optional<std::int64_t> parse_http_date(std::string_view text) {
  // Only the separators differ, so the character after the day name picks the form.
  const auto sep = text.find_first_of(", ");
  if (sep == std::string_view::npos) return std::nullopt;
  if (text[sep] == ' ') return asctime_date(text);
  return sep == 3 ? imf_fixdate(text) : rfc850_date(text);
}

std::string format_http_date(std::int64_t epoch_seconds) {
  using namespace std::chrono;
  const sys_seconds t{seconds{epoch_seconds}};
  const auto days = floor<std::chrono::days>(t);
  const year_month_day ymd{days};
  const hh_mm_ss hms{t - days};
  const weekday wd{days};
  std::array<char, 64> buf{};
  const int n = std::snprintf(buf.data(), buf.size(), "%s, %02u %s %04d %02d:%02d:%02d GMT",
                              short_days[wd.c_encoding()].data(), unsigned{ymd.day()},
                              months[unsigned{ymd.month()} - 1].data(), int{ymd.year()},
                              static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                              static_cast<int>(hms.seconds().count()));
  return std::string(buf.data(), n > 0 ? static_cast<std::size_t>(n) : 0);
}

}  // namespace okta_sidecar::ratelimit
