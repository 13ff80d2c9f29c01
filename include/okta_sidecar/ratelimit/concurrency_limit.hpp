#pragma once
// The adaptive in-flight cap for one Okta tenant (pure; time comes in as arguments).
//
// Okta limits how many requests an org may have in flight at once (docs/okta-behaviour.md "Concurrent rate
// limit": 75 for Workforce and Customer Identity orgs, 35 or 15 for small ones) and records
// every violation in the admin-visible System Log. The cap therefore starts from a seed that
// no published org limit is below, grows additively (one slot per cap's worth of completions
// while the cap is in full use, i.e. about one per round trip), backs off multiplicatively on a
// concurrency 429, and remembers the level Okta refused: growth stops just below it, and one
// step above it is tried only once per `reprobe_interval`, so a new burst does not rediscover
// the limit and the org's limit rising (or a neighbour going quiet) is still found.
#include <cstdint>
#include <optional>

#include "okta_sidecar/clock.hpp"

namespace okta_sidecar::ratelimit {

struct concurrency_settings {
  std::uint32_t initial = 15;  // rate_limit.initial_concurrency
  std::uint32_t max = 75;      // rate_limit.max_concurrency: the ceiling, never exceeded
  // Multiplicative decrease on a concurrency 429 (TCP-like; CUBIC uses 0.7).
  double backoff = 0.75;
  // How often one step above the refused level is tried again.
  duration reprobe_interval = std::chrono::seconds(60);
};

// How the current cap came about (for /status and the dashboard).
enum class concurrency_source {
  seed,        // the configured initial value, nothing learned yet
  grown,       // grown additively while no concurrency 429 was seen
  backed_off,  // lowered by a concurrency 429
  reprobed,    // one step above the refused level, tried after reprobe_interval
  shared,      // adopted from another sidecar of the fleet
};
const char* to_string(concurrency_source s);

// What another sidecar (or an earlier run) learned, for fleet sharing.
struct concurrency_memory {
  std::uint32_t cap = 0;
  std::optional<std::uint32_t> refused;  // lowest in-flight level Okta refused
  bool operator==(const concurrency_memory&) const = default;
};

// The adaptive in-flight cap of one host.
class concurrency_limit {
 public:
  explicit concurrency_limit(concurrency_settings s = {});

  std::uint32_t cap() const { return cap_; }
  // In-flight level at which Okta last answered with a concurrency 429, if any.
  std::optional<std::uint32_t> refused() const { return refused_; }
  concurrency_source source() const { return source_; }
  std::uint64_t backoffs() const { return backoffs_; }
  // Bumped by every multiplicative decrease; a request records it when admitted so that the
  // 429s of one overshoot (all sent before the decrease) back off only once.
  std::uint32_t epoch() const { return epoch_; }

  // A request finished without a concurrency 429; `inflight_before` counts it.
  void on_success(std::uint32_t inflight_before, time_point now);
  // Okta answered a concurrency 429 with `inflight_before` of ours in flight (counting it), for a
  // request admitted in `admitted_epoch`. Returns true when this lowered the cap.
  bool on_limited(std::uint32_t inflight_before, std::uint32_t admitted_epoch, time_point now);
  // Adopts what the fleet learned when it is more cautious than what we know.
  void adopt(const concurrency_memory& m, time_point now);
  concurrency_memory memory() const { return {cap_, refused_}; }
  void update_settings(const concurrency_settings& s);

 private:
  concurrency_settings settings_;
  std::uint32_t cap_;
  std::optional<std::uint32_t> refused_;
  std::uint32_t successes_ = 0;  // at the current cap, in full use
  std::uint32_t epoch_ = 0;
  std::uint64_t backoffs_ = 0;
  std::optional<time_point> last_refusal_or_probe_;
  concurrency_source source_ = concurrency_source::seed;
};

}  // namespace okta_sidecar::ratelimit
