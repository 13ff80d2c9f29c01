#include "okta_sidecar/ratelimit/http_date.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>

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

// Index of a three-letter name in `names`, or -1: the three bytes compared as one number.
template <std::size_t N>
int index_of3(const std::array<std::string_view, N>& names, std::string_view s) {
  const auto pack = [](std::string_view t) {
    return static_cast<unsigned char>(t[0]) << 16 | static_cast<unsigned char>(t[1]) << 8 |
           static_cast<unsigned char>(t[2]);
  };
  const auto want = pack(s);
  for (std::size_t i = 0; i < N; ++i)
    if (pack(names[i]) == want) return static_cast<int>(i);
  return -1;
}

// `count` digits of `s` at `at` into `value`.
bool digits_at(std::string_view s, std::size_t at, int count, int& value) {
  value = 0;
  for (std::size_t i = at; i < at + static_cast<std::size_t>(count); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    value = value * 10 + (s[i] - '0');
  }
  return true;
}

// IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT". The form every current server sends (each
// response's Date is read), so it is checked by position rather than with the cursor.
std::optional<std::int64_t> imf_fixdate(std::string_view s) {
  constexpr std::string_view layout = "Sun, 06 Nov 1994 08:49:37 GMT";
  if (s.size() != layout.size()) return std::nullopt;
  for (const std::size_t i : {3, 4, 7, 11, 16, 19, 22, 25, 26, 27, 28})
    if (s[i] != layout[i]) return std::nullopt;
  fields f;
  f.month = index_of3(months, s.substr(8, 3));
  if (index_of3(short_days, s.substr(0, 3)) < 0 || f.month < 0 || !digits_at(s, 5, 2, f.day) ||
      !digits_at(s, 12, 4, f.year) || !digits_at(s, 17, 2, f.hour) || !digits_at(s, 20, 2, f.minute) ||
      !digits_at(s, 23, 2, f.second) || f.hour > 23 || f.minute > 59 || f.second > 60)
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

namespace {

std::optional<std::int64_t> parse_any_form(std::string_view text) {
  // Only the separators differ, so the character after the day name picks the form.
  std::size_t sep = 0;
  while (sep < text.size() && text[sep] != ',' && text[sep] != ' ') ++sep;
  if (sep == text.size()) return std::nullopt;
  if (text[sep] == ' ') return asctime_date(text);
  return sep == 3 ? imf_fixdate(text) : rfc850_date(text);
}

}  // namespace

std::optional<std::int64_t> parse_http_date(std::string_view text) {
  // A server's Date changes once a second and nearly every response carries one: the thread
  // keeps its last answer for the next text that is the same (an IMF-fixdate is 29 bytes).
  struct memo {
    std::array<char, 29> text{};
    std::size_t size = 0;
    std::optional<std::int64_t> value;
  };
  thread_local memo last;
  // Not through the memo: an empty view's data() may be null, which memcmp and memcpy must not get.
  if (text.empty()) return std::nullopt;
  if (text.size() == last.size && std::memcmp(text.data(), last.text.data(), text.size()) == 0)
    return last.value;
  const auto value = parse_any_form(text);
  if (text.size() <= last.text.size()) {
    std::memcpy(last.text.data(), text.data(), text.size());
    last.size = text.size();
    last.value = value;
  }
  return value;
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
