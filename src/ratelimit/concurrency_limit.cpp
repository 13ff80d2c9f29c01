#include "okta_sidecar/ratelimit/concurrency_limit.hpp"

#include <algorithm>
#include <cmath>

namespace okta_sidecar::ratelimit {

namespace {

std::uint32_t clamp_cap(std::uint32_t v, const concurrency_settings& s) {
  return std::clamp<std::uint32_t>(v, 1, std::max<std::uint32_t>(1, s.max));
}

}  // namespace

const char* to_string(concurrency_source s) {
  switch (s) {
    case concurrency_source::seed:
      return "seed";
    case concurrency_source::grown:
      return "grown";
    case concurrency_source::backed_off:
      return "backed_off";
    case concurrency_source::reprobed:
      return "reprobed";
    case concurrency_source::shared:
      return "shared";
  }
  return "seed";
}

concurrency_limit::concurrency_limit(concurrency_settings s)
    : settings_(s), cap_(clamp_cap(std::min(s.initial, s.max), s)) {}

void concurrency_limit::on_success(std::uint32_t inflight_before, time_point now) {
  if (cap_ >= settings_.max) return;
  // Only a cap in full use tells anything: a lightly loaded host must not grow a cap it never
  // tried (TCP's congestion-window validation, RFC 7661, has the same reason).
  if (inflight_before < cap_) return;
  if (++successes_ < cap_) return;
  const std::uint32_t next = cap_ + 1;
  if (refused_ && next >= *refused_) {
    // At the edge Okta refused: one step up per reprobe_interval, no faster.
    if (last_refusal_or_probe_ && now - *last_refusal_or_probe_ < settings_.reprobe_interval) return;
    refused_ = next + 1;  // assumed fine until a 429 says otherwise
    last_refusal_or_probe_ = now;
    source_ = concurrency_source::reprobed;
  } else {
    source_ = concurrency_source::grown;
  }
  successes_ = 0;
  cap_ = next;
}

bool concurrency_limit::on_limited(std::uint32_t inflight_before, std::uint32_t admitted_epoch,
                                   time_point now) {
  const std::uint32_t level = std::max<std::uint32_t>(1, inflight_before);
  successes_ = 0;
  last_refusal_or_probe_ = now;
  if (admitted_epoch != epoch_) {
    // Sent before the last decrease: the same overshoot. Only keep below what was refused.
    refused_ = std::min(refused_.value_or(level), level);
    cap_ = clamp_cap(std::min(cap_, level - 1), settings_);
    return false;
  }
  refused_ = level;
  const auto lowered = static_cast<std::uint32_t>(
      std::floor(static_cast<double>(std::min(cap_, level)) * std::clamp(settings_.backoff, 0.0, 1.0)));
  cap_ = clamp_cap(std::min(lowered, level - 1), settings_);
  ++epoch_;
  ++backoffs_;
  source_ = concurrency_source::backed_off;
  return true;
}

void concurrency_limit::adopt(const concurrency_memory& m, time_point now) {
  if (m.cap == 0) return;
  bool learned = false;
  if (m.refused && (!refused_ || *m.refused < *refused_)) {
    refused_ = m.refused;
    last_refusal_or_probe_ = now;
    learned = true;
  }
  const std::uint32_t target = clamp_cap(m.cap, settings_);
  // A fresh sidecar (still at its seed) takes the fleet's figure either way; a learned cap only
  // moves down, so one sidecar's optimism cannot undo another's 429.
  if (source_ == concurrency_source::seed ? target != cap_ : target < cap_) {
    cap_ = target;
    successes_ = 0;
    learned = true;
  }
  if (learned) source_ = concurrency_source::shared;
}

void concurrency_limit::update_settings(const concurrency_settings& s) {
  const bool unlearned = source_ == concurrency_source::seed;
  settings_ = s;
  if (unlearned) {
    cap_ = clamp_cap(std::min(s.initial, s.max), s);
  } else {
    cap_ = clamp_cap(cap_, s);  // what was learned stays, within the new ceiling
  }
}

}  // namespace okta_sidecar::ratelimit
