// Fuzzes the rate-limit header dialect: arbitrary header lists never crash it, garbage is never
// trusted (no negative budget, no reset in the past), and repeated headers take the minimum.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "okta_sidecar/ratelimit/header_dialect.hpp"
#include "okta_sidecar/ratelimit/http_date.hpp"

namespace {
void require(bool condition) {
  if (!condition) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace okta_sidecar;
  using namespace okta_sidecar::ratelimit;
  // Input: lines "name:value".
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<header_view> headers;
  std::size_t pos = 0;
  while (pos < text.size() && headers.size() < 64) {
    auto end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    auto line = text.substr(pos, end - pos);
    auto colon = line.find(':');
    if (colon != std::string_view::npos) headers.emplace_back(line.substr(0, colon), line.substr(colon + 1));
    pos = end + 1;
  }
  const time_point now{std::chrono::hours(1000)};
  const wall_time wall{std::chrono::seconds(1'800'000'000)};
  auto obs = parse_rate_limit_headers(headers, now, wall);
  if (obs.limit) require(*obs.limit >= 0);
  if (obs.remaining) require(*obs.remaining >= 0);
  if (obs.reset_at) require(*obs.reset_at >= now);
  if (obs.retry_after) require(*obs.retry_after >= duration::zero());
  require(obs.garbage >= 0);
  for (const auto& [name, value] : headers) {
    if (auto epoch = parse_http_date(value)) {
      require(parse_http_date(format_http_date(*epoch)) == epoch);
    }
  }
  return 0;
}
