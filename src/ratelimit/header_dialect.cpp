#include "okta_sidecar/ratelimit/header_dialect.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>

#include "okta_sidecar/ratelimit/http_date.hpp"
#include "okta_sidecar/ratelimit/okta_clock.hpp"

namespace okta_sidecar::ratelimit {
namespace {

// Bounds past which a value is treated as corrupt rather than as a very large fact. No Okta
// bucket is near ten million per minute; a reset or Retry-After more than a day away is not a
// rate-limit window (it is usually milliseconds sent where seconds were meant).
constexpr std::int64_t max_count = 10'000'000;
constexpr std::int64_t max_horizon_seconds = 86'400;
// Epoch seconds beyond this (year 5138) are corrupt; the bound also keeps the arithmetic
// below far from overflow.
constexpr std::int64_t max_epoch = 100'000'000'000;

// ASCII case-insensitive comparison against a literal of lower-case letters, digits and '-',
// eight bytes at a time. Where the literal has a letter (bit 0x40 set) a byte may differ from
// it only by bit 0x20, which makes exactly the upper-case letter equal; elsewhere bytes must be
// equal.
bool iequals(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  std::size_t i = 0;
  for (; i + 8 <= a.size(); i += 8) {
    std::uint64_t x = 0, y = 0;
    std::memcpy(&x, a.data() + i, 8);
    std::memcpy(&y, lower.data() + i, 8);
    if ((x | ((y & 0x4040404040404040ull) >> 1)) != y) return false;
  }
  for (; i < a.size(); ++i) {
    const char c = a[i];
    if (c != lower[i] && !(c >= 'A' && c <= 'Z' && static_cast<char>(c | 0x20) == lower[i])) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view s) {  // OWS = *( SP / HTAB ), RFC 9110 §5.6.3
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<std::int64_t> parse_non_negative(std::string_view s) {
  std::int64_t v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

void keep_min(std::optional<std::int64_t>& slot, std::int64_t v) {
  if (!slot || v < *slot) slot = v;
}

// Folds every element of a (possibly comma-joined, RFC 9110 §5.3) integer header into `slot`,
// keeping the minimum: Okta has been seen repeating the rate-limit headers, and the
// smallest value is the one that cannot overdraw the budget.
void fold_integers(std::string_view value, std::int64_t max, std::optional<std::int64_t>& slot,
                   int& garbage) {
  // Nearly always one plain number: read at once, without the list's splitting. Up to 18
  // digits cannot overflow.
  if (!value.empty() && value.size() <= 18) {
    std::int64_t v = 0;
    std::size_t i = 0;
    for (; i < value.size() && value[i] >= '0' && value[i] <= '9'; ++i) v = v * 10 + (value[i] - '0');
    if (i == value.size()) {
      if (v <= max) {
        keep_min(slot, v);
      } else {
        ++garbage;
      }
      return;
    }
  }
  bool any = false;
  while (true) {
    const auto comma = value.find(',');
    const auto element = trim_ows(value.substr(0, comma));
    if (!element.empty()) {  // empty list elements are legal and ignored (RFC 9110 §5.6.1)
      any = true;
      const auto v = parse_non_negative(element);
      if (v && *v <= max) {
        keep_min(slot, *v);
      } else {
        ++garbage;
      }
    }
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  if (!any) ++garbage;
}

// Which of the headers read here `name` is. Every response passes all its fields through this,
// so the name's length picks the one candidate compared.
enum class header { other, limit, remaining, reset, retry_after, date };
header which(std::string_view name) {
  switch (name.size()) {
    case 4:
      return iequals(name, "date") ? header::date : header::other;
    case 11:
      return iequals(name, "retry-after") ? header::retry_after : header::other;
    case 18:
      if (iequals(name, "x-rate-limit-limit")) return header::limit;
      return iequals(name, "x-rate-limit-reset") ? header::reset : header::other;
    case 22:
      return iequals(name, "x-rate-limit-remaining") ? header::remaining : header::other;
    default:
      return header::other;
  }
}

bool has_letter(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); });
}

}  // namespace

observation parse_rate_limit_headers(std::span<const header_view> headers, time_point now, wall_time wall_now,
                                     std::optional<double> okta_offset) {
  observation o;
  std::optional<std::int64_t> reset, retry_seconds, retry_date;
  for (const auto& [name, raw_value] : headers) {
    const auto h = which(name);
    if (h == header::other) continue;
    const auto value = trim_ows(raw_value);
    if (h == header::limit) {
      fold_integers(value, max_count, o.limit, o.garbage);
    } else if (h == header::remaining) {
      fold_integers(value, max_count, o.remaining, o.garbage);
    } else if (h == header::reset) {
      fold_integers(value, max_epoch, reset, o.garbage);
    } else if (h == header::retry_after) {
      // RFC 9110 §10.2.3: delta-seconds or an HTTP-date; only the date form has letters.
      if (has_letter(value)) {
        if (const auto d = parse_http_date(value)) {
          keep_min(retry_date, *d);
        } else {
          ++o.garbage;
        }
      } else {
        fold_integers(value, max_horizon_seconds, retry_seconds, o.garbage);
      }
    } else {  // Date
      if (const auto d = parse_http_date(value)) {
        keep_min(o.server_date_epoch, *d);
      } else {
        ++o.garbage;
      }
    }
  }

  // Okta's epoch values are read against Okta's own clock, as all four official SDKs do, so the
  // skew between this machine's wall clock and Okta's cancels out; the local steady clock then
  // carries the remaining interval. Date is truncated to the second, so Okta's true time was
  // up to 1 s later than Date says: (reset - Date) over-estimates the wait by up to 1 s (plus
  // the response's one-way latency), erring late, the safe side. The host's offset bound from
  // earlier responses (okta_offset_bound) narrows that to milliseconds and still errs late;
  // it is used only while it agrees with this Date (a stepped clock falls back to Date).
  // Without Date the local wall clock is the only reference and its skew goes uncorrected.
  // Seconds from the reference instant to `epoch`, or nullopt past the horizon (checked on
  // whole seconds first so that no duration arithmetic can overflow).
  const auto until = [&](std::int64_t epoch) -> std::optional<duration> {
    if (o.server_date_epoch) {
      const std::int64_t d = epoch - *o.server_date_epoch;
      if (d < -max_horizon_seconds || d > max_horizon_seconds) return std::nullopt;
      if (okta_offset) {
        const double wall = std::chrono::duration<double>(wall_now.time_since_epoch()).count();
        const double own = static_cast<double>(*o.server_date_epoch) - wall;  // this Date's bound
        if (std::fabs(*okta_offset - own) <= okta_offset_bound::step_seconds) {
          const double okta_now = wall + std::max(own, *okta_offset);
          return std::chrono::duration_cast<duration>(
              std::chrono::duration<double>(static_cast<double>(epoch) - okta_now));
        }
      }
      return seconds{d};
    }
    const auto wall = std::chrono::floor<seconds>(wall_now.time_since_epoch()).count();
    if (epoch - wall < -max_horizon_seconds || epoch - wall > max_horizon_seconds) return std::nullopt;
    return std::chrono::duration_cast<duration>(seconds{epoch} - wall_now.time_since_epoch());
  };

  if (reset) {
    if (const auto d = until(*reset)) {
      o.reset_epoch = reset;
      // A reset already behind us means the window is open again now.
      o.reset_at = now + std::max(*d, duration::zero());
    } else {
      ++o.garbage;
    }
  }

  if (retry_seconds) o.retry_after = seconds{*retry_seconds};
  if (retry_date) {
    if (const auto d = until(*retry_date)) {
      const auto wait = std::max(*d, duration::zero());  // a date in the past: retry now
      if (!o.retry_after || wait < *o.retry_after) o.retry_after = wait;
    } else {
      ++o.garbage;
    }
  }

  // Okta's concurrent-request limit answers with Limit 0 and Remaining 0; its reset is only
  // a hint (~2 minutes ahead) and must not be read as the end of a window.
  if (o.limit == 0 && o.remaining == 0) {
    o.kind = limit_kind::concurrency;
  } else if (o.limit || o.remaining) {
    o.kind = limit_kind::window;
  }
  return o;
}

}  // namespace okta_sidecar::ratelimit
