#include "okta_sidecar/ratelimit/local_bucket_store.hpp"

namespace okta_sidecar::ratelimit {

local_bucket_store::local_bucket_store(bucket_settings s) : settings_(s) {}

bucket& local_bucket_store::at(const bucket_key& key) {
  auto it = buckets_.find(key);
  if (it == buckets_.end()) it = buckets_.emplace(key, bucket(settings_)).first;
  return it->second;
}

grant local_bucket_store::take(const bucket_key& key, double keep_fraction, time_point now) {
  return at(key).take(keep_fraction, now);
}

void local_bucket_store::settle(const bucket_key& key, const grant& g, settle_kind kind,
                                const observation* obs, time_point now) {
  at(key).settle(g, kind, obs, now);
}

std::optional<bucket_view> local_bucket_store::view(const bucket_key& key, time_point now) const {
  const auto it = buckets_.find(key);
  if (it == buckets_.end()) return std::nullopt;
  return it->second.view(now);
}

void local_bucket_store::forget(const bucket_key& key) { buckets_.erase(key); }

void local_bucket_store::update_settings(const bucket_settings& s) {
  settings_ = s;
  for (auto& [key, b] : buckets_) b.update_settings(s);
}

}  // namespace okta_sidecar::ratelimit
