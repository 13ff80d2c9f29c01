#include "okta_sidecar/metrics/history.hpp"

#include <algorithm>
#include <cmath>

namespace okta_sidecar::metrics {

history::history(std::int64_t interval_ms, std::size_t capacity, std::size_t max_buckets)
    : interval_ms_(interval_ms), capacity_(std::max<std::size_t>(capacity, 1)), max_buckets_(max_buckets) {}

void history::record(std::int64_t epoch_ms, const std::vector<bucket_sample>& samples) {
  std::lock_guard lock(mu_);
  for (const auto& s : samples) {
    auto it = series_.find({s.host, s.bucket});
    if (it == series_.end()) {
      if (series_.size() >= max_buckets_) continue;
      it = series_.emplace(key{s.host, s.bucket}, series{}).first;
      // The first point of a bucket has no interval behind it: its counters start the deltas.
      it->second.last_absorbed = s.absorbed_429_total;
      it->second.last_wait_sum = s.wait_sum_s;
      it->second.last_wait_count = s.wait_count;
    }
    series& ser = it->second;
    // Counters only grow; a smaller total (a series recreated) restarts the deltas at 0.
    const double absorbed = std::max(0.0, s.absorbed_429_total - ser.last_absorbed);
    const double waits = s.wait_count - ser.last_wait_count;
    const double wait_sum = s.wait_sum_s - ser.last_wait_sum;
    std::optional<double> wait_ms;
    if (waits > 0 && wait_sum >= 0) wait_ms = wait_sum / waits * 1000.0;
    ser.last_absorbed = s.absorbed_429_total;
    ser.last_wait_sum = s.wait_sum_s;
    ser.last_wait_count = s.wait_count;
    ser.last_seen_ms = epoch_ms;
    ser.points.push_back(point{epoch_ms, s.limit, s.remaining, s.queued, s.inflight, wait_ms, absorbed});
    while (ser.points.size() > capacity_) ser.points.pop_front();
  }
  // Buckets not sampled for a whole span have nothing left to show.
  const std::int64_t span = interval_ms_ * static_cast<std::int64_t>(capacity_);
  std::erase_if(series_, [&](const auto& kv) { return epoch_ms - kv.second.last_seen_ms > span; });
}

nlohmann::json history::to_json() const {
  using json = nlohmann::json;
  auto opt = [](const auto& v) { return v ? json(*v) : json(nullptr); };
  json doc = {{"interval_ms", interval_ms_},
              {"span_ms", interval_ms_ * static_cast<std::int64_t>(capacity_)},
              {"buckets", json::array()}};
  std::lock_guard lock(mu_);
  for (const auto& [k, ser] : series_) {
    json t = json::array(), limit = json::array(), remaining = json::array(), used = json::array(),
         queued = json::array(), inflight = json::array(), wait = json::array(), absorbed = json::array();
    for (const point& p : ser.points) {
      t.push_back(p.t_ms);
      limit.push_back(opt(p.limit));
      remaining.push_back(opt(p.remaining));
      used.push_back(p.limit && p.remaining ? json(std::max<std::int64_t>(0, *p.limit - *p.remaining))
                                            : json(nullptr));
      queued.push_back(p.queued);
      inflight.push_back(p.inflight);
      wait.push_back(p.wait_ms ? json(std::round(*p.wait_ms * 1000) / 1000) : json(nullptr));
      absorbed.push_back(p.absorbed);
    }
    doc["buckets"].push_back({{"host", k.first},
                              {"bucket", k.second},
                              {"t", std::move(t)},
                              {"limit", std::move(limit)},
                              {"remaining", std::move(remaining)},
                              {"used", std::move(used)},
                              {"queued", std::move(queued)},
                              {"inflight", std::move(inflight)},
                              {"queue_wait_ms", std::move(wait)},
                              {"absorbed_429", std::move(absorbed)}});
  }
  return doc;
}

}  // namespace okta_sidecar::metrics
