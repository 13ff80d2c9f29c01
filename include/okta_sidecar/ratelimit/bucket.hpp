#pragma once
// The budget arithmetic of one Okta rate-limit bucket (pure; time comes in as arguments).
//
// Okta reports, per response, the bucket's Limit, Remaining and Reset (epoch s). Remaining is
// org-wide: other pods, scripts and the admin console draw from it too, so the newest header
// always beats our own count. What the headers cannot know yet is our own traffic that Okta
// has not answered: those requests are subtracted until their answers (which do include them)
// arrive. Observations are merged as Okta's own Terraform provider does:
// a larger reset starts a new window, an older reset is stale, and within one window the
// minimum Remaining wins (responses reorder under concurrency). The window length itself is
// learned from the headers, never assumed: an answer right after a window opened shows
// (almost) all of it as time-to-reset.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/ratelimit/observation.hpp"

namespace okta_sidecar::ratelimit {

struct bucket_settings {
  // Okta's windows are about a minute, but the length is not a contract (per-user buckets run
  // 10 s, test doubles a few seconds): this is only the assumption before the first headers.
  // From then on the bucket uses what it learned (see bucket::window()).
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
  std::uint64_t seq = 0;               // the bucket's count of takes when granted (0: not counted)
};

// How an admitted request ended.
enum class settle_kind {
  answered,       // Okta processed it: its cost is inside the answer's Remaining
  not_processed,  // 429: Okta did not process it, so it cost nothing (docs/okta-behaviour.md "429 responses")
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
  // `available` if the requests that were in flight when the last Remaining arrived were
  // already counted in it: an answer can overtake an earlier request's, so the truth lies
  // between the two.
  std::int64_t at_most = 0;
  std::int64_t orphans = 0;  // lost this window
  duration window{};         // learned window length (the setting until the first headers)
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

  // The window length in use: the longest time-to-reset seen in the last few windows (an
  // answer right after a window opens shows almost all of it), or the setting before any.
  duration window() const;
  // Windows whose longest time-to-reset is remembered; a window that shrinks (a new org
  // setting, a test double reconfigured) is forgotten after this many windows.
  static constexpr std::size_t window_memory = 4;

 private:
  void roll(time_point now);
  void merge(const observation& obs, bool rejected, time_point now);
  void adopt(const observation& obs, bool rejected, time_point now);
  void learn_window(const observation& obs, bool new_window, time_point now);
  void lower_remaining(std::int64_t rem);
  // Resets this much older than ours belong to a past window (see merge()).
  std::int64_t stale_age_seconds() const;
  std::int64_t capacity() const;
  std::int64_t available() const;

  bucket_settings settings_;
  bucket_phase phase_ = bucket_phase::unknown;
  std::optional<std::int64_t> limit_, remaining_, reset_epoch_;
  std::optional<time_point> reset_at_;
  std::optional<time_point> hold_until_;
  std::int64_t inflight_ = 0;
  std::uint64_t taken_ = 0;         // takes so far (grant::seq)
  std::uint64_t counted_mark_ = 0;  // takes up to this one were out when Remaining last fell
  std::int64_t overlap_ = 0;        // ...and of those, still in flight (maybe inside Remaining)
  std::int64_t orphans_ = 0;
  std::int64_t probes_ = 0;     // probes out in the current unknown/opening phase
  std::int64_t foreign_ = 0;    // part of Limit a 429 showed we may not use (token share)
  bool share_refused_ = false;  // a share 429 (budget left) was seen in the current window
  std::uint32_t generation_ = 0;
  // Longest (reset_at - now) seen per window, newest last; zero = slot unused.
  std::array<duration, window_memory> time_to_reset_{};
};

}  // namespace okta_sidecar::ratelimit
