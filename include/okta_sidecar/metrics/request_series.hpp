#pragma once
// The series one proxied request updates, resolved once per (host, bucket) rather than at each
// update: family::with takes a mutex and a map lookup, and under label bounds (issue 14) two
// more mutexes and an allocation. A request asks request_series::of() once, then each update
// is an atomic load and an atomic add (Envoy's stats resolved at start-up, for labels only known
// at run time). Pure; thread-safe.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "okta_sidecar/metrics/label_bounds.hpp"
#include "okta_sidecar/metrics/registry.hpp"

namespace okta_sidecar::metrics {

// One series of a family, looked up on first use and kept. Lazy so that a scrape shows exactly
// the series that were used, as with family::with; kept because a family never frees a child
// while the registry lives, so the pointer cannot dangle.
template <class T>
class lazy_series {
 public:
  lazy_series(family<T>& f, std::vector<std::string> label_values)
      : family_(f), labels_(std::move(label_values)) {}
  lazy_series(const lazy_series&) = delete;
  lazy_series& operator=(const lazy_series&) = delete;

  T& get() {
    if (T* p = child_.load(std::memory_order_acquire)) return *p;
    // Two threads may both look it up: family::with gives both the same child.
    T& c = family_.with(labels_);
    child_.store(&c, std::memory_order_release);
    return c;
  }

 private:
  family<T>& family_;
  const std::vector<std::string> labels_;
  std::atomic<T*> child_{nullptr};
};

// The families keyed by upstream host and bucket that a request updates.
struct request_families {
  family<counter>& requests;            // host, bucket, status
  family<counter>& upstream_responses;  // host, bucket, status
  family<counter>& upstream_429;        // host, bucket
  family<counter>& absorbed_429;        // host, bucket
  family<counter>& admissions;          // host, bucket, result
  family<histogram>& queue_wait;        // host, bucket
  family<histogram>& upstream_latency;  // host
  family<counter>& breaker_rejections;  // host
};

// The series of one (host label, bucket label) pair.
class bucket_series {
 public:
  bucket_series(const request_families& f, std::string host_label, std::string bucket_label);

  counter& requests(int status) { return by_status(requests_, families_.requests, status); }
  counter& upstream_responses(int status) {
    return by_status(responses_, families_.upstream_responses, status);
  }
  counter& upstream_429() { return upstream_429_.get(); }
  counter& absorbed_429() { return absorbed_429_.get(); }
  counter& admitted() { return admitted_.get(); }
  counter& rejected() { return rejected_.get(); }
  counter& cancelled() { return cancelled_.get(); }
  histogram& queue_wait() { return queue_wait_.get(); }
  histogram& upstream_latency() { return upstream_latency_.get(); }
  counter& breaker_rejections() { return breaker_rejections_.get(); }

  const std::string& host_label() const { return host_; }
  const std::string& bucket_label() const { return bucket_; }

  // Statuses kept per family; a response with yet another status is looked up each time.
  static constexpr std::size_t status_slots = 16;

 private:
  struct status_slot {
    std::atomic<int> status{empty};
    std::atomic<counter*> child{nullptr};
    static constexpr int empty = -1;
  };
  using slots = std::array<status_slot, status_slots>;
  counter& by_status(slots& s, family<counter>& f, int status);

  request_families families_;
  std::string host_;
  std::string bucket_;
  lazy_series<counter> upstream_429_, absorbed_429_, admitted_, rejected_, cancelled_;
  lazy_series<histogram> queue_wait_, upstream_latency_;
  lazy_series<counter> breaker_rejections_;
  slots requests_, responses_;
};

// bucket_series by the (host, bucket) names a request carries. Two maps, both bounded: one
// series per label pair (label_bounds bounds those; never freed, so a bucket_series& stays
// valid for the life of the process), and a cache of names -> series in front of it, so that
// a request skips label_bounds' locks. The names are client-chosen under a wildcard: that
// cache holds at most max_cached_names and starts over when full, and when label_bounds
// changes (a reload may give a host seen as "other" its own label).
class request_series {
 public:
  static constexpr std::size_t max_cached_names = 4096;
  // Without label bounds (tests), as many label pairs as a family holds series.
  static constexpr std::size_t max_label_pairs = default_max_series;

  explicit request_series(const request_families& f) : families_(f) {}
  request_series(const request_series&) = delete;
  request_series& operator=(const request_series&) = delete;

  // Host and bucket names go through `bounds` from now on. Call at start-up, before serving.
  void bound_labels(label_bounds& bounds) { bounds_ = &bounds; }

  bucket_series& of(std::string_view host, std::string_view bucket);

  std::size_t cached_names() const;
  std::size_t label_pairs() const;

 private:
  // Orders (string, string) pairs and lets a lookup use string_views.
  struct pair_less {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      const std::string_view a1 = a.first, b1 = b.first;
      if (a1 != b1) return a1 < b1;
      return std::string_view(a.second) < std::string_view(b.second);
    }
  };
  using name_pair = std::pair<std::string, std::string>;

  request_families families_;
  label_bounds* bounds_ = nullptr;
  mutable std::shared_mutex mu_;
  std::uint64_t generation_ = 0;  // label_bounds::generation() when by_name_ was filled
  std::map<name_pair, std::unique_ptr<bucket_series>, pair_less> by_label_;
  std::map<name_pair, bucket_series*, pair_less> by_name_;
};

}  // namespace okta_sidecar::metrics
