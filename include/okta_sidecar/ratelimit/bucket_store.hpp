#pragma once
// Where bucket budgets live. Local mode keeps them in process; fleet mode (later) shares one
// tenant's budget between sidecars through Redis. The scheduler sees only this interface, and
// every call is synchronous: a shared store answers from tokens it leased in advance and
// refreshes its lease in the background, so no request ever waits on a network round trip here.
#include <optional>
#include <string>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/ratelimit/bucket.hpp"
#include "okta_sidecar/ratelimit/bucket_key.hpp"
#include "okta_sidecar/ratelimit/concurrency_limit.hpp"
#include "okta_sidecar/ratelimit/observation.hpp"

namespace okta_sidecar::ratelimit {

// Budget arithmetic for every bucket the sidecar has seen.
class bucket_store {
 public:
  virtual ~bucket_store() = default;

  // One request's worth of budget, keeping `keep_fraction` of each window back (reserve).
  virtual grant take(const bucket_key& key, double keep_fraction, time_point now) = 0;
  // An admitted request ended; `obs` (may be null) holds its answer's rate-limit headers.
  virtual void settle(const bucket_key& key, const grant& g, settle_kind kind, const observation* obs,
                      time_point now) = 0;
  // nullopt: the store has never heard of this bucket.
  virtual std::optional<bucket_view> view(const bucket_key& key, time_point now) const = 0;
  // The scheduler evicted this bucket (idle past its TTL, or least recently used at the cap):
  // drop what is kept for it, so client-chosen keys cannot grow the store without bound.
  virtual void forget(const bucket_key& key) = 0;

  // Fleet sharing of the adaptive in-flight cap (a local store shares nothing): the scheduler
  // tells what a concurrency 429 taught it, and asks what the others learned (`version` grows
  // with every new lesson, so each is adopted once).
  struct shared_concurrency {
    concurrency_memory memory;
    std::uint64_t version = 0;
  };
  virtual void share_concurrency(const std::string& /*host*/, const concurrency_memory& /*learned*/) {}
  virtual std::optional<shared_concurrency> fleet_concurrency(const std::string& /*host*/) const {
    return std::nullopt;
  }
};

}  // namespace okta_sidecar::ratelimit
