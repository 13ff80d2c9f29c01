#pragma once
// The fleet-mode bucket_store (pure): many sidecars share one tenant's budgets through a shared
// ledger (Redis, driven by src/fleet). Every call the scheduler makes stays synchronous and
// local: take() spends tokens this sidecar leased in advance (`lease_size` at a time) and asks
// the shell to fetch more in the background; the shell ships outgoing() to Redis and feeds the
// answers back through on_lease()/on_heartbeat(). When Redis is slow or down (fleet_health) the
// store serves from an in-process bucket capped at a conservative share of each window and of
// the in-flight cap, so no request ever fails or waits long because Redis did.
//
// Leases belong to one window (Okta's X-Rate-Limit-Reset): they are valid until that window ends
// and unused tokens die with it. Observations are always merged into the local buckets (so the
// fallback starts warm) and, when they tell the fleet something new (a newer window, more usage
// than leased, a 429), are sent to the ledger, which merges them like bucket.cpp does: newest
// reset wins, same window keeps the minimum remaining.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "okta_sidecar/ratelimit/bucket_store.hpp"
#include "okta_sidecar/ratelimit/fleet_health.hpp"
#include "okta_sidecar/ratelimit/local_bucket_store.hpp"

namespace okta_sidecar::ratelimit {

struct fleet_settings {
  std::uint32_t lease_size = 5;         // tokens asked for per Redis round trip
  std::uint32_t expected_replicas = 1;  // local-mode share = 1 / expected_replicas ...
  double fallback_share = 0.0;          // ... unless this is in (0, 1]
  std::uint32_t max_concurrency = 75;   // the tenant's in-flight cap, shared by the fleet
  // take() asks again this soon while a lease is on its way (the shell answers in ~1 RTT).
  duration lease_poll = std::chrono::milliseconds(2);
  // Leased tokens nobody here asked for in this long go back to the ledger, so a window's
  // budget is spent by whoever in the fleet still has requests waiting (issue 15).
  duration lease_idle_return = std::chrono::milliseconds(30);
  // A sidecar refused because the window's tokens are all leased looks again this soon:
  // others may hand unused tokens back before the reset.
  duration lease_recheck = std::chrono::milliseconds(50);
  // A ledger answer older than this no longer says much about the others' in-flight requests.
  duration heartbeat_ttl = std::chrono::seconds(2);
  fleet_health_settings health{};
  bucket_settings bucket{};

  double share() const;
};

// One observation in the ledger's terms: Okta's own numbers plus the window end relative to now
// (the ledger keeps time on Redis's clock, so sidecar clock skew does not matter).
struct ledger_observation {
  std::int64_t limit = 0;
  std::int64_t remaining = 0;
  std::int64_t reset_epoch = 0;
  std::int64_t reset_in_ms = 0;
  bool rejected = false;  // came with a 429
};

// What the shell sends for one bucket: an optional observation, then a lease of `want` tokens.
struct lease_request {
  std::uint64_t id = 0;
  bucket_key key;
  std::uint32_t want = 0;  // 0: report only
  std::optional<ledger_observation> obs;
  std::int64_t give_back = 0;         // unused tokens handed back to the ledger ...
  std::int64_t give_back_reset = -1;  // ... from the window with this reset (else void)
};

// The ledger's answer to a lease_request.
struct lease_reply {
  std::int64_t granted = 0;
  bool probe = false;       // granted to open an unknown or just-ended window
  std::int64_t limit = -1;  // -1: no window known
  std::int64_t left = 0;    // tokens still unleased in the window after this grant
  std::int64_t reset_epoch = -1;
  std::int64_t reset_in_ms = -1;  // window end, relative to the answer
  std::int64_t retry_in_ms = 0;   // nothing granted: ask again after this long
};

// The in-flight figures the shell publishes per host, and what the ledger says back.
struct heartbeat_request {
  std::vector<std::pair<std::string, std::uint32_t>> inflight;  // host -> in flight here
  // Per host (same order): a concurrency back-off learned here since the last heartbeat.
  std::vector<std::optional<concurrency_memory>> learned;
};
struct heartbeat_reply {
  std::uint32_t replicas = 1;                            // live sidecars, this one included
  std::map<std::string, std::uint32_t> others_reserved;  // host -> in-flight slots the others hold
  // host -> the fleet's latest concurrency back-off (version 0: none yet).
  std::map<std::string, bucket_store::shared_concurrency> concurrency;
};

// Per-bucket state for /status.
struct fleet_bucket_info {
  bucket_key key;
  std::int64_t tokens = 0;  // leased, unused
  std::optional<std::int64_t> shared_limit, shared_left, shared_reset_epoch;
  std::optional<duration> lease_expires_in;
  std::int64_t local_used = 0;  // taken in local mode this window
};

struct fleet_counters {
  std::uint64_t lease_hits = 0;        // take() served from a leased token
  std::uint64_t lease_requests = 0;    // requests handed to the shell
  std::uint64_t lease_grants = 0;      // ... answered with tokens
  std::uint64_t lease_denials = 0;     // ... answered with none (window spent, probe out)
  std::uint64_t tokens_expired = 0;    // leased tokens that died unused with their window
  std::uint64_t tokens_returned = 0;   // leased tokens handed back unused while the window ran
  std::uint64_t local_admissions = 0;  // take() granted in local mode
  std::uint64_t share_denials = 0;     // local mode: refused by the conservative share
  std::uint64_t inflight_denials = 0;  // refused by the fleet-wide in-flight cap
  std::uint64_t observations_sent = 0;
};

// bucket_store whose budget is leased from the fleet's shared ledger.
class fleet_store final : public bucket_store {
 public:
  explicit fleet_store(fleet_settings s = {});

  // ---- bucket_store (called by the scheduler) -----------------------------------------
  grant take(const bucket_key& key, double keep_fraction, time_point now) override;
  void settle(const bucket_key& key, const grant& g, settle_kind kind, const observation* obs,
              time_point now) override;
  std::optional<bucket_view> view(const bucket_key& key, time_point now) const override;
  // Drops the bucket's lease state and learned share (unused leased tokens die with their
  // window anyway); a lease still on its way keeps the entry until it is answered.
  void forget(const bucket_key& key) override;
  std::size_t size() const { return leases_.size(); }

  // ---- the shell's side ---------------------------------------------------------------
  // Lease requests and observations to send now (each request is marked outstanding).
  std::vector<lease_request> outgoing(time_point now);
  bool has_outgoing() const;
  void on_lease(std::uint64_t id, const lease_reply& r, time_point now);
  // The request got no usable answer (connection lost, error reply, timeout).
  void on_lease_failed(std::uint64_t id, time_point now);
  heartbeat_request heartbeat() const;
  // A heartbeat carrying `learned` was sent: those lessons are out.
  void heartbeat_sent(const heartbeat_request& r);
  void share_concurrency(const std::string& host, const concurrency_memory& learned) override;
  std::optional<shared_concurrency> fleet_concurrency(const std::string& host) const override;
  void on_heartbeat(const heartbeat_reply& r, time_point now);
  // Every Redis answer's latency and every failure go through here; see fleet_health.
  void on_redis_answer(duration latency, time_point now);
  void on_redis_failure(fallback_reason why, time_point now);
  // Checks outstanding requests against the timeout (the shell calls it on its tick).
  void tick(time_point now);
  // Earliest time tick() may change something (an outstanding request's timeout).
  std::optional<time_point> next_deadline() const;

  fleet_mode mode() const { return health_.mode(); }
  const fleet_health& health() const { return health_; }
  bool take_mode_changed() { return health_.take_changed(); }
  const fleet_counters& counters() const { return counters_; }
  std::uint32_t replicas_seen() const { return replicas_; }
  std::uint32_t inflight_allowance(const std::string& host, time_point now) const;
  std::vector<fleet_bucket_info> buckets(time_point now) const;
  void update_settings(const fleet_settings& s);

 private:
  struct lease_state {
    std::int64_t tokens = 0;
    std::int64_t epoch = -1;  // window the tokens belong to (-1: probe, window unknown)
    time_point expires{};
    time_point last_take{};  // last time take() used (or was granted) a token here
    bool probe = false;
    std::optional<std::uint64_t> outstanding;  // id of the request on its way
    bool asked = false;                        // ... and whether it asks for tokens
    time_point sent{};
    std::optional<time_point> denied_until;
    // Last ledger answer.
    std::optional<std::int64_t> limit, left, reset_epoch;
    std::optional<time_point> reset_at;
    bool want_more = false;                    // take() found no token: ask as soon as possible
    std::optional<ledger_observation> report;  // best observation not yet sent
    // Local mode: what this sidecar took from the window `share_epoch`.
    std::int64_t local_used = 0;
    std::optional<std::int64_t> share_epoch;
  };

  grant take_shared(const bucket_key& key, lease_state& ls, double keep_fraction, time_point now);
  grant take_local(const bucket_key& key, lease_state& ls, double keep_fraction, time_point now);
  void drop_leases(time_point now);
  bool idle_tokens(const lease_state& ls, time_point now) const;
  void note_report(lease_state& ls, const observation& obs, bool rejected, time_point now);
  lease_state& at(const bucket_key& key);

  fleet_settings settings_;
  local_bucket_store local_;
  fleet_health health_;
  std::map<bucket_key, lease_state> leases_;
  std::map<std::uint64_t, bucket_key> outstanding_;
  std::map<std::string, std::uint32_t, std::less<>> host_inflight_;
  std::map<std::string, std::uint32_t, std::less<>> others_reserved_;
  std::optional<time_point> heartbeat_at_;
  std::map<std::string, concurrency_memory, std::less<>> learned_out_;  // to publish
  std::map<std::string, shared_concurrency, std::less<>> learned_in_;   // from the fleet
  std::uint32_t replicas_ = 1;
  std::uint64_t next_id_ = 1;
  fleet_counters counters_;
};

}  // namespace okta_sidecar::ratelimit
