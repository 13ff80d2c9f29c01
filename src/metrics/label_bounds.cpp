#include "okta_sidecar/metrics/label_bounds.hpp"

namespace okta_sidecar::metrics {

label_bounds::label_bounds(std::vector<std::string> exact_hosts, std::vector<std::string> table_buckets,
                           std::size_t max_ids)
    : max_ids_(max_ids) {
  // The proxy's own fixed names (blind tunnels, CONNECT records, refused requests).
  table_buckets.insert(table_buckets.end(), {"tunnel", "connect", "-", "default"});
  update(std::move(exact_hosts), std::move(table_buckets));
}

void label_bounds::update(std::vector<std::string> exact_hosts, std::vector<std::string> table_buckets) {
  std::lock_guard lock(mu_);
  hosts_.insert(exact_hosts.begin(), exact_hosts.end());  // never removed: a label seen stays valid
  table_.insert(table_buckets.begin(), table_buckets.end());
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

std::string label_bounds::host(std::string_view host) const {
  std::lock_guard lock(mu_);
  return hosts_.contains(host) ? std::string(host) : std::string(other_label);
}

std::string label_bounds::bucket(std::string_view host_label, std::string_view bucket) {
  std::lock_guard lock(mu_);
  if (table_.contains(bucket)) return std::string(bucket);
  // "<group>:<id>"; a name without ':' that the table does not list counts as an id too.
  const auto colon = bucket.find(':');
  const std::string group(colon == std::string_view::npos ? std::string_view{} : bucket.substr(0, colon));
  const std::string_view id = colon == std::string_view::npos ? bucket : bucket.substr(colon + 1);
  if (id == other_label) return std::string(bucket);
  auto& seen = ids_[{std::string(host_label), group}];
  if (seen.contains(id)) return std::string(bucket);
  if (seen.size() < max_ids_) {
    seen.emplace(id);
    return std::string(bucket);
  }
  return group.empty() ? std::string(other_label) : group + ":" + std::string(other_label);
}

std::pair<std::string, std::string> label_bounds::host_bucket(std::string_view host,
                                                              std::string_view bucket) {
  std::string h = this->host(host);
  std::string b = this->bucket(h, bucket);
  return {std::move(h), std::move(b)};
}

}  // namespace okta_sidecar::metrics
