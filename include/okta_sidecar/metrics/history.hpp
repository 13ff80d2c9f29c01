#pragma once
// The last minutes of each bucket's figures, for the dashboard's small charts: a bounded ring
// of points per bucket (one point per sampling interval), kept in memory only. Pure: the
// caller samples the figures and passes the time; counters arrive as totals and are turned
// into per-interval deltas here.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace okta_sidecar::metrics {

class history {
 public:
  // What the shell reads for one bucket at one sampling instant.
  struct bucket_sample {
    std::string host;
    std::string bucket;
    std::optional<std::int64_t> limit;
    std::optional<std::int64_t> remaining;
    std::size_t queued = 0;
    std::uint32_t inflight = 0;
    double absorbed_429_total = 0;  // okta_sidecar_absorbed_429_total of the bucket
    double wait_sum_s = 0;          // okta_sidecar_queue_wait_seconds_sum of the bucket
    double wait_count = 0;          // okta_sidecar_queue_wait_seconds_count of the bucket
  };

  // `capacity` points per bucket (15 min at one point per 5 s = 180); at most `max_buckets`
  // buckets are kept (the ones sampled most recently win), so memory stays bounded.
  explicit history(std::int64_t interval_ms = 5000, std::size_t capacity = 180,
                   std::size_t max_buckets = 256);

  // Appends one point per sampled bucket at `epoch_ms`. A bucket no longer sampled keeps its
  // points until they are older than the whole span, then disappears.
  void record(std::int64_t epoch_ms, const std::vector<bucket_sample>& samples);

  // {"interval_ms", "span_ms", "buckets": [{"host", "bucket", "t": [epoch ms...],
  //  "limit": [...], "remaining": [...], "used": [...], "queued": [...], "inflight": [...],
  //  "queue_wait_ms": [...] (mean over the interval, null without admissions),
  //  "absorbed_429": [...] (in the interval)}]}; columns have one entry per point.
  nlohmann::json to_json() const;

  std::int64_t interval_ms() const { return interval_ms_; }

 private:
  struct point {
    std::int64_t t_ms;
    std::optional<std::int64_t> limit, remaining;
    std::size_t queued;
    std::uint32_t inflight;
    std::optional<double> wait_ms;
    double absorbed;
  };
  struct series {
    std::deque<point> points;
    double last_absorbed = 0, last_wait_sum = 0, last_wait_count = 0;
    std::int64_t last_seen_ms = 0;
  };
  using key = std::pair<std::string, std::string>;

  std::int64_t interval_ms_;
  std::size_t capacity_;
  std::size_t max_buckets_;
  mutable std::mutex mu_;
  std::map<key, series> series_;
};

}  // namespace okta_sidecar::metrics
