#pragma once
// The budget arithmetic of one Okta rate-limit bucket (pure; time comes in as arguments).
//
// Okta reports, per response, the bucket's Limit, Remaining and Reset (epoch s). Remaining is
// org-wide: other pods, scripts and the admin console draw from it too, so the newest header
// always beats our own count. What the headers cannot know yet is our own traffic that Okta
// has not answered: those requests are subtracted until their answers (which do include them)
// arrive. Observations are merged as Okta's Terraform provider does (okta/internal/apimutex):
// a larger reset starts a new window, a reset a whole window older than ours is stale, and
// within one window the minimum Remaining wins (responses reorder under concurrency).
#include <cstdint>
#include <optional>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/ratelimit/observation.hpp"

namespace okta_sidecar::ratelimit {

struct bucket_settings {
  // Okta's windows are about a minute; used to spot stale resets and to predict waits.
  duration window = std::chrono::seconds(60);
  // Requests sent into a window nobody has reported on yet (unknown bucket, or the reset just
  // passed) before its first answer arrives: the answer may show a neighbour already used it.
  std::uint32_t opening_probes = 1;
  // Pause after a 429 that gives no usable reset and no Retry-After, so retries don't spin.
  duration blind_429_hold = std::chrono::seconds(1);
};

enum class bucket_phase {
  unknown,    // nothing learned: one probe at a time
  unmetered,  // answers came back without rate-limit headers: only the host cap applies
  confirmed,  // headers of the current window seen
  opening,    // the reset passed: budget restored to the limit, waiting for the first answer
};

// A take()'s answer. Returned to settle() so the bucket knows what it is settling.
struct grant {
  bool granted = false;
  bool probe = false;                  // sent to learn an unknown or just-opened window
  std::uint32_t generation = 0;        // which phase the probe belonged to
  std::optional<time_point> retry_at;  // not granted: try again then; nullopt = after an answer
};

// How an admitted request ended.
enum class settle_kind {
  answered,       // Okta processed it: its cost is inside the answer's Remaining
  not_processed,  // 429: Okta did not process it, so it cost nothing (okta-facts "429 responses")
  lost,           // no usable answer (timeout, client left mid-flight): it may have been
                  // counted, so it keeps costing until the window ends
};

// Snapshot for predictions, /status and the local 429's headers.
struct bucket_view {
  bucket_phase phase = bucket_phase::unknown;
  std::optional<std::int64_t> limit, remaining, reset_epoch;  // as last seen in headers
  std::optional<time_point> reset_at;                         // end of the window we are in (local clock)
  std::optional<time_point> hold_until;                       // Retry-After / blind-429 pause
  std::int64_t capacity = 0;   // usable per window: limit minus any share we learned is not ours
  std::int64_t available = 0;  // what may still be taken in this window (estimate in `opening`)
  std::int64_t inflight = 0;   // taken, not settled
  std::int64_t orphans = 0;    // lost this window
  duration window{};
};

// One bucket's window state machine.
class bucket {
 public:
  explicit bucket(bucket_settings s = {});

  // Ask for one request's worth of budget, leaving `keep_fraction` of the window for others
  // (the interactive reserve).
  grant take(double keep_fraction, time_point now);
  // `obs` may be null (no headers, or headers that describe something else).
  void settle(const grant& g, settle_kind kind, const observation* obs, time_point now);
  bucket_view view(time_point now) const;
  void update_settings(const bucket_settings& s) { settings_ = s; }

  // Tokens a `keep_fraction` keeps back from a window of `capacity`.
  static std::int64_t kept(double keep_fraction, std::int64_t capacity);

 private:
  void roll(time_point now);
  void merge(const observation& obs, bool rejected, time_point now);
  void adopt(const observation& obs, bool rejected, time_point now);
  std::int64_t capacity() const;
  std::int64_t available() const;

  bucket_settings settings_;
  bucket_phase phase_ = bucket_phase::unknown;
  std::optional<std::int64_t> limit_, remaining_, reset_epoch_;
  std::optional<time_point> reset_at_;
  std::optional<time_point> hold_until_;
  std::int64_t inflight_ = 0;
  std::int64_t orphans_ = 0;
  std::int64_t probes_ = 0;   // probes out in the current unknown/opening phase
  std::int64_t foreign_ = 0;  // part of Limit a 429 showed we may not use (token share)
  std::uint32_t generation_ = 0;
};

}  // namespace okta_sidecar::ratelimit
