#pragma once
// The admission scheduler: for every request to Okta it decides admit now, queue, or reject,
// and the async shell only carries the decisions out (a sans-I/O state machine, like
// Boost.MySQL's connection-pool node). Pure: no clock, no I/O, no exceptions.
//
// Model: a queue per bucket (two lanes, interactive first; within a lane callers take turns,
// each with its own FIFO, so one batch job cannot starve another app); a budget per bucket in
// a bucket_store; an in-flight cap per tenant host (Okta's concurrent-request limit).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/ratelimit/bucket.hpp"
#include "okta_sidecar/ratelimit/bucket_key.hpp"
#include "okta_sidecar/ratelimit/bucket_store.hpp"
#include "okta_sidecar/ratelimit/concurrency_limit.hpp"
#include "okta_sidecar/ratelimit/observation.hpp"

namespace okta_sidecar::ratelimit {

struct scheduler_settings {
  duration max_wait = std::chrono::seconds(60);
  std::size_t max_queue = 10000;        // per bucket
  std::size_t max_queue_total = 10000;  // all buckets together: the whole queue's bound
  // Bounded state (issue 14): bucket instances named by a client-chosen path parameter
  // ({authServerId}) per host and group; further ids share "<group>:other".
  std::size_t max_instances_per_host = 64;
  // Bucket entries kept in all (with their hosts and store entries). An entry with nothing
  // queued or in flight is evicted after bucket_idle_ttl, or least recently used first when a
  // new one needs room; at the cap with none idle, a new bucket's request is rejected.
  std::size_t max_buckets = 1024;
  duration bucket_idle_ttl = std::chrono::minutes(10);
  std::uint32_t max_concurrency = 75;      // in flight per host (tenant): the ceiling
  std::uint32_t initial_concurrency = 15;  // the adaptive cap's seed (see concurrency_limit)
  double reserve_fraction = 0.0;           // share of each window kept for interactive requests
  // rate_limit.capacity_percent: at most this share of every bucket's limit is used per window
  // (org-wide Remaining, so the whole fleet's use counts), leaving the rest to other integrations.
  std::uint32_t capacity_percent = 100;
  // How the adaptive in-flight cap backs off on a concurrency 429 and re-probes upward.
  double concurrency_backoff = 0.75;
  duration concurrency_reprobe = std::chrono::seconds(60);
  bucket_settings bucket{};  // for the default local store only
};

struct admission_request {
  bucket_key key;
  std::uint64_t caller = 0;            // hash of the credential (fairness key); 0 = anonymous
  bool interactive = false;            // may use the reserve; served first
  bool rate_limited = true;            // false: skips the bucket (keys/discovery) but counts in-flight
  time_point deadline;                 // latest admission the client accepts (now + max_wait or its header)
  std::uint32_t capacity_percent = 0;  // the bucket's own ceiling (buckets file); 0 = the setting
};

using ticket = std::uint64_t;

enum class verdict_kind { admit, queue, reject };
struct verdict {
  verdict_kind kind;
  ticket id = 0;           // admit/queue; 0 on reject
  duration retry_after{};  // reject: whole seconds, at least 1
};

struct wakeups {
  std::vector<ticket> admitted;  // queued tickets admitted now
  std::vector<std::pair<ticket, duration>>
      rejected;  // queued tickets that can no longer make their deadline (+ Retry-After)
  std::optional<time_point> next_wake;  // call poll() again at this time
};

enum class response_kind { deliver, requeued, give_up };
struct response_decision {
  response_kind kind;
  duration retry_after{};  // give_up: for the local 429
};

struct last_seen {
  std::optional<std::int64_t> limit, remaining, reset_epoch;
};

struct bucket_status {
  bucket_key key;
  std::optional<std::int64_t> limit, remaining, reset_epoch;
  std::optional<duration> reset_in;
  std::size_t queued = 0;
  std::uint32_t inflight = 0;
  std::uint32_t capacity_percent = 100;  // share of the limit this sidecar (or fleet) may use
};

struct host_status {
  std::string host;
  std::uint32_t inflight = 0;
  std::uint32_t cap = 0;
  std::size_t queued = 0;
  concurrency_source cap_source = concurrency_source::seed;  // how the cap was learned
  std::optional<std::uint32_t> refused;  // in-flight level Okta last refused (concurrency 429)
  std::uint64_t backoffs = 0;            // concurrency 429s that lowered the cap
};

// Decides, for every request to Okta, admit now / queue / reject; the shell only does what it says.
class scheduler {
 public:
  explicit scheduler(scheduler_settings s, std::unique_ptr<bucket_store> store = nullptr /* = local */);
  ~scheduler();
  scheduler(scheduler&&) noexcept;
  scheduler& operator=(scheduler&&) noexcept;
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  // The bucket a request uses: `bucket` itself, or "<group>:other" when `instance` (the name
  // carries a client-chosen id) and the host already has max_instances_per_host instances of
  // the group. Call it before submit() and use the answer in the key.
  std::string bucket_name(const std::string& host, const std::string& group, const std::string& bucket,
                          bool instance, time_point now);
  verdict submit(const admission_request& req, time_point now);
  // The shell calls this after every event and at next_wake.
  wakeups poll(time_point now);
  // Client gone: queued -> removed (costs nothing upstream); in flight -> slot released.
  void cancel(ticket id, time_point now);
  // Upstream response headers arrived for an admitted ticket. A 429 with bucket headers is
  // merged and the ticket requeued at the front (`requeued`: the shell waits for poll() to
  // admit it again) or `give_up` if its deadline can't be met; per_principal 429s (authn /
  // authorize per-user limits) are delivered, not retried. Concurrency 429: the host's cap
  // drops to the number still in flight and the ticket retries when one of them completes.
  response_decision on_response(ticket id, int status, const observation& obs, bool per_principal,
                                time_point now);
  // No usable response (error/timeout): release the slot.
  void on_failure(ticket id, time_point now);

  last_seen last(const bucket_key& key) const;  // for the local 429's X-Rate-Limit-* headers
  std::vector<bucket_status> buckets(time_point now) const;
  std::vector<host_status> hosts() const;
  void update_settings(const scheduler_settings& s);  // config reload
  // Fleet sharing of the learned in-flight caps: what this sidecar knows, and what others knew.
  std::vector<std::pair<std::string, concurrency_memory>> concurrency_memories() const;
  void adopt_concurrency(const std::string& host, const concurrency_memory& m, time_point now);
  std::size_t queued_total() const;
  std::size_t bucket_count() const;
  std::size_t host_count() const;
  std::vector<ticket> drain_all();  // shutdown: removes and returns every queued ticket

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace okta_sidecar::ratelimit
