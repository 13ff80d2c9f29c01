#include "okta_sidecar/metrics/request_series.hpp"

#include <mutex>

namespace okta_sidecar::metrics {

bucket_series::bucket_series(const request_families& f, std::string host_label, std::string bucket_label)
    : families_(f),
      host_(std::move(host_label)),
      bucket_(std::move(bucket_label)),
      upstream_429_(f.upstream_429, {host_, bucket_}),
      absorbed_429_(f.absorbed_429, {host_, bucket_}),
      admitted_(f.admissions, {host_, bucket_, "admitted"}),
      rejected_(f.admissions, {host_, bucket_, "rejected"}),
      cancelled_(f.admissions, {host_, bucket_, "cancelled"}),
      queue_wait_(f.queue_wait, {host_, bucket_}),
      upstream_latency_(f.upstream_latency, {host_}),
      breaker_rejections_(f.breaker_rejections, {host_}) {}

counter& bucket_series::by_status(slots& s, family<counter>& f, int status) {
  for (auto& slot : s) {
    int seen = slot.status.load(std::memory_order_acquire);
    if (seen == status_slot::empty &&
        slot.status.compare_exchange_strong(seen, status, std::memory_order_acq_rel)) {
      counter& c = f.with({host_, bucket_, std::to_string(status)});
      slot.child.store(&c, std::memory_order_release);
      return c;
    }
    // `seen` is the slot's status now, ours or another's.
    if (seen == status) {
      if (counter* c = slot.child.load(std::memory_order_acquire)) return *c;
      break;  // claimed by a thread still looking it up: look it up too
    }
  }
  return f.with({host_, bucket_, std::to_string(status)});
}

bucket_series& request_series::of(std::string_view host, std::string_view bucket) {
  const std::uint64_t generation = bounds_ ? bounds_->generation() : 0;
  const std::pair<std::string_view, std::string_view> name{host, bucket};
  {
    std::shared_lock lock(mu_);
    if (generation == generation_) {
      if (auto it = by_name_.find(name); it != by_name_.end()) return *it->second;
    }
  }
  // The labels outside our lock: label_bounds takes its own.
  name_pair labels = bounds_ ? bounds_->host_bucket(host, bucket) : name_pair{host, bucket};
  std::unique_lock lock(mu_);
  if (generation > generation_) {
    by_name_.clear();
    generation_ = generation;
  }
  auto it = by_label_.find(labels);
  if (it == by_label_.end()) {
    if (by_label_.size() >= max_label_pairs) {
      labels = {std::string(overflow_label_value), std::string(overflow_label_value)};
      it = by_label_.find(labels);
    }
    if (it == by_label_.end()) {
      auto series = std::make_unique<bucket_series>(families_, labels.first, labels.second);
      it = by_label_.emplace(std::move(labels), std::move(series)).first;
    }
  }
  // Labels computed under an older generation are right for this request, not worth keeping.
  if (generation == generation_) {
    if (by_name_.size() >= max_cached_names) by_name_.clear();
    by_name_.emplace(name_pair{host, bucket}, it->second.get());
  }
  return *it->second;
}

std::size_t request_series::cached_names() const {
  std::shared_lock lock(mu_);
  return by_name_.size();
}

std::size_t request_series::label_pairs() const {
  std::shared_lock lock(mu_);
  return by_label_.size();
}

}  // namespace okta_sidecar::metrics
