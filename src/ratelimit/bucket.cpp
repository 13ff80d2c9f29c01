#include "okta_sidecar/ratelimit/bucket.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace okta_sidecar::ratelimit {

bucket::bucket(bucket_settings s) : settings_(s) {}

std::int64_t bucket::kept(double keep_fraction, std::int64_t capacity) {
  if (!(keep_fraction > 0.0) || capacity <= 0) return 0;
  const auto k =
      static_cast<std::int64_t>(std::llround(std::min(keep_fraction, 1.0) * static_cast<double>(capacity)));
  return std::clamp<std::int64_t>(k, 0, capacity);
}

duration bucket::window() const {
  const duration longest = *std::max_element(time_to_reset_.begin(), time_to_reset_.end());
  if (longest <= duration::zero()) return settings_.window;
  // Resets are whole epoch seconds: a window is never shorter than one.
  return std::max<duration>(longest, std::chrono::seconds(1));
}

void bucket::learn_window(const observation& obs, bool new_window, time_point now) {
  if (new_window) {
    std::rotate(time_to_reset_.begin(), time_to_reset_.begin() + 1, time_to_reset_.end());
    time_to_reset_.back() = duration::zero();
  }
  if (!obs.reset_at || *obs.reset_at <= now) return;
  // The header parser bounds resets to its horizon; an hour also bounds a clock step between
  // the Date and our steady clock from turning into an absurd prediction.
  const duration seen = std::min<duration>(*obs.reset_at - now, std::chrono::hours(1));
  time_to_reset_.back() = std::max(time_to_reset_.back(), seen);
}

std::int64_t bucket::stale_age_seconds() const {
  // Every answer of one window carries the same reset (the window's end), and two windows'
  // resets are at least a whole window apart (Okta opens the next one only after the last
  // ended). The learned length errs long by the Date/reset rounding (up to ~2 s, which matters
  // for short windows), so half of it still separates "this window" from "the previous one"
  // without ever mistaking the previous window's low Remaining for ours, which would stall the
  // bucket until the window ends.
  const auto half = std::chrono::duration_cast<std::chrono::seconds>(window() / 2).count();
  return std::max<std::int64_t>(1, half);
}

std::int64_t bucket::capacity() const {
  if (!limit_) return 0;
  return std::max<std::int64_t>(0, *limit_ - foreign_);
}

std::int64_t bucket::available() const {
  switch (phase_) {
    case bucket_phase::confirmed:
      return std::max<std::int64_t>(0, remaining_.value_or(0) - foreign_ - inflight_ - orphans_);
    case bucket_phase::opening:
      return std::max<std::int64_t>(0, capacity() - inflight_ - orphans_);
    case bucket_phase::unknown:
    case bucket_phase::unmetered:
      return 0;
  }
  return 0;
}

void bucket::roll(time_point now) {
  // Okta opens the next window with the first request after the reset; until an answer from
  // it arrives the budget is assumed restored, but only probes go (a neighbour may have
  // opened and drained it already).
  if (phase_ == bucket_phase::confirmed && reset_at_ && now >= *reset_at_) {
    phase_ = bucket_phase::opening;
    ++generation_;
    probes_ = 0;
    orphans_ = 0;  // lost requests were charged to the window that just ended
  }
}

grant bucket::take(double keep_fraction, time_point now) {
  roll(now);
  if (hold_until_ && now < *hold_until_) return grant{false, false, generation_, hold_until_};
  switch (phase_) {
    case bucket_phase::unmetered:
      ++inflight_;
      return grant{true, false, generation_, std::nullopt};
    case bucket_phase::unknown:
    case bucket_phase::opening:
      if (probes_ < std::max<std::int64_t>(1, settings_.opening_probes)) {
        ++probes_;
        ++inflight_;
        return grant{true, true, generation_, std::nullopt, ++taken_};
      }
      return grant{false, false, generation_, std::nullopt};
    case bucket_phase::confirmed:
      if (available() - kept(keep_fraction, capacity()) > 0) {
        ++inflight_;
        return grant{true, false, generation_, std::nullopt, ++taken_};
      }
      return grant{false, false, generation_, reset_at_};
  }
  return grant{};
}

void bucket::settle(const grant& g, settle_kind kind, const observation* obs, time_point now) {
  roll(now);
  if (inflight_ > 0) --inflight_;
  if (g.seq != 0 && g.seq <= counted_mark_ && overlap_ > 0) --overlap_;
  if (g.probe && g.generation == generation_ && probes_ > 0) --probes_;
  if (kind == settle_kind::lost) ++orphans_;
  if (obs) merge(*obs, kind == settle_kind::not_processed, now);
}

void bucket::adopt(const observation& obs, bool rejected, time_point now) {
  const std::int64_t rem = std::max<std::int64_t>(0, *obs.remaining);
  if (obs.limit && *obs.limit > 0) {
    limit_ = *obs.limit;
  } else if (!limit_) {
    limit_ = rem;
  }
  lower_remaining(rem);
  reset_epoch_ = obs.reset_epoch;
  reset_at_ = obs.reset_at.value_or(now + window());
  phase_ = bucket_phase::confirmed;
  ++generation_;
  probes_ = 0;
  orphans_ = 0;
  if (rejected && reset_at_ <= now) reset_at_ = now + settings_.blind_429_hold;
}

void bucket::lower_remaining(std::int64_t rem) {
  remaining_ = rem;
  // Whatever is still out may already be counted in this Remaining, or may not.
  counted_mark_ = taken_;
  overlap_ = inflight_;
}

void bucket::merge(const observation& obs, bool rejected, time_point now) {
  if (rejected && obs.retry_after) {
    const auto until = now + *obs.retry_after;
    hold_until_ = hold_until_ ? std::max(*hold_until_, until) : until;
  }
  // Okta's concurrency 429 (Limit 0, Remaining 0, reset ~2 min out) says nothing about this
  // bucket's window; the scheduler lowers the host's in-flight cap instead.
  if (obs.kind == limit_kind::concurrency) return;
  const bool usable = obs.kind == limit_kind::window && obs.remaining && obs.reset_epoch;
  if (!usable) {
    if (rejected && !obs.retry_after) {
      hold_until_ = now + settings_.blind_429_hold;
    } else if (!rejected && phase_ == bucket_phase::unknown) {
      phase_ = bucket_phase::unmetered;
      ++generation_;
      probes_ = 0;
    }
    return;
  }

  const std::int64_t rem = std::max<std::int64_t>(0, *obs.remaining);
  const bool new_window = phase_ == bucket_phase::unknown || phase_ == bucket_phase::unmetered ||
                          !reset_epoch_ || *obs.reset_epoch > *reset_epoch_;
  if (new_window && reset_epoch_) {
    // A learned share decays: a whole window without a share 429 halves what we keep off
    // limits, so a share an admin raised (or a 429 that was a neighbour's burst) is found
    // again within a few windows, at the cost of at most one 429 per re-probe.
    if (!share_refused_) foreign_ /= 2;
    share_refused_ = false;
  }
  if (rejected && rem > 0) {
    // A 429 with org budget left: our credential may use only a share of the bucket (50% by
    // default, docs/okta-behaviour.md "Rate-limit headers"). The unreachable part is what was left.
    foreign_ = std::max(foreign_, rem);
    share_refused_ = true;
  }

  if (new_window) {
    learn_window(obs, true, now);
    adopt(obs, rejected, now);
  } else if (*obs.reset_epoch <= *reset_epoch_ - stale_age_seconds()) {
    // Older than ours: a slow answer from a past window, ignore.
  } else if (phase_ == bucket_phase::opening) {
    if (rejected) {
      // Okta refused it under the window we believed over: our reset estimate was early.
      phase_ = bucket_phase::confirmed;
      ++generation_;
      probes_ = 0;
      if (!remaining_ || rem <= *remaining_) lower_remaining(rem);
      reset_at_ = std::max(reset_at_.value_or(now), now + settings_.blind_429_hold);
    }
    // An answer from the window that just ended cost that window, not the new one.
  } else {
    learn_window(obs, false, now);
    if (!remaining_ || rem <= *remaining_) lower_remaining(rem);
    if (*obs.reset_epoch == *reset_epoch_ && obs.reset_at && reset_at_) {
      // Each answer's Date is rounded to the second; the earliest estimate is the tightest.
      reset_at_ = std::min(*reset_at_, *obs.reset_at);
    }
    if (rejected && reset_at_ && *reset_at_ <= now) reset_at_ = now + settings_.blind_429_hold;
  }
  if (limit_) foreign_ = std::min(foreign_, std::max<std::int64_t>(0, *limit_ - 1));
}

bucket_view bucket::view(time_point now) const {
  bucket copy = *this;
  copy.roll(now);
  bucket_view v;
  v.phase = copy.phase_;
  v.limit = copy.limit_;
  v.remaining = copy.remaining_;
  v.reset_epoch = copy.reset_epoch_;
  v.reset_at = copy.phase_ == bucket_phase::confirmed ? copy.reset_at_ : std::nullopt;
  if (copy.hold_until_ && now < *copy.hold_until_) v.hold_until = copy.hold_until_;
  v.capacity = copy.capacity();
  v.available = copy.available();
  v.inflight = copy.inflight_;
  copy.inflight_ -= copy.overlap_;
  v.at_most = copy.available();
  v.orphans = copy.orphans_;
  v.window = copy.window();
  return v;
}

}  // namespace okta_sidecar::ratelimit
