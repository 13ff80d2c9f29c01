#pragma once
// In-process bucket_store: one `bucket` per key, for a sidecar that is the tenant's only
// client of the budget it manages (neighbours are still seen through Remaining).
#include <map>

#include "okta_sidecar/ratelimit/bucket_store.hpp"

namespace okta_sidecar::ratelimit {

// bucket_store over a std::map of buckets (a tenant has a few dozen buckets at most).
class local_bucket_store final : public bucket_store {
 public:
  explicit local_bucket_store(bucket_settings s = {});

  grant take(const bucket_key& key, double keep_fraction, time_point now) override;
  void settle(const bucket_key& key, const grant& g, settle_kind kind, const observation* obs,
              time_point now) override;
  std::optional<bucket_view> view(const bucket_key& key, time_point now) const override;
  void forget(const bucket_key& key) override;

  void update_settings(const bucket_settings& s);
  std::size_t size() const { return buckets_.size(); }

 private:
  bucket& at(const bucket_key& key);

  bucket_settings settings_;
  std::map<bucket_key, bucket> buckets_;
};

}  // namespace okta_sidecar::ratelimit
