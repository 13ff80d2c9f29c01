#pragma once
// Label values for metrics keyed by upstream host and bucket, taken from bounded sets only
// (issue 14): a scrape must not grow with the host names and authorization-server ids clients
// make up. Pure; thread-safe.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace okta_sidecar::metrics {

inline constexpr std::string_view other_label = "other";

// host: a configured exact name (intercept_hosts without "*.", upstream.resolve keys) keeps its
// name, anything else is "other". bucket: a name of the table without an id keeps its name; an
// instance "<group>:<id>" keeps its name for the first max_ids ids of that group seen under a
// host label, later ones are "<group>:other". The sets never shrink, so the series count is
// bounded for the life of the process: hosts x (table names + groups x (max_ids + 1)).
class label_bounds {
 public:
  label_bounds(std::vector<std::string> exact_hosts, std::vector<std::string> table_buckets,
               std::size_t max_ids);

  std::string host(std::string_view host) const;
  std::string bucket(std::string_view host_label, std::string_view bucket);
  // Both at once, for a (host, bucket) pair as scheduler and session see it.
  std::pair<std::string, std::string> host_bucket(std::string_view host, std::string_view bucket);
  void update(std::vector<std::string> exact_hosts, std::vector<std::string> table_buckets);
  // Counts update()s: a host label may change from "other" to its name at one, so whoever
  // caches raw name -> label (request_series) starts over when this moves.
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  mutable std::mutex mu_;
  std::set<std::string, std::less<>> hosts_;
  std::set<std::string, std::less<>> table_;
  std::size_t max_ids_;
  std::atomic<std::uint64_t> generation_{0};
  std::map<std::pair<std::string, std::string>, std::set<std::string, std::less<>>> ids_;  // (host, group)
};

}  // namespace okta_sidecar::metrics
