#pragma once
// Fleet mode's I/O shell: owns the Redis connection and ships the pure fleet_store's lease
// requests, observations and heartbeats to the ledger scripts, pipelined, from one coroutine on
// its own strand. The scheduler never waits on it: make_store() hands the scheduler a
// bucket_store that only locks the shared fleet_store and, when that has something to send,
// wakes this loop. Redis slow or down is not an error here, only a mode (fleet_health):
// reconnect with backoff, serve in local mode meanwhile, rejoin when Redis answers again.
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/config/config.hpp"
#include "okta_sidecar/fleet/redis_connection.hpp"
#include "okta_sidecar/logging/log.hpp"
#include "okta_sidecar/metrics/registry.hpp"
#include "okta_sidecar/ratelimit/bucket_store.hpp"
#include "okta_sidecar/ratelimit/fleet_store.hpp"

namespace okta_sidecar::fleet {

struct fleet_service_settings {
  config::redis_url url;     // fleet.redis, as the config loader validated it
  std::string redacted_url;  // for logs and /status: the password never appears
  std::string key_prefix = "okta-sidecar:";
  ratelimit::fleet_settings store{};
  duration heartbeat_interval = std::chrono::milliseconds(100);
  duration connect_timeout = std::chrono::seconds(1);
  // A pipeline still unanswered after this is abandoned and the connection re-made (the
  // store fell back long before, at fleet.timeout_ms).
  duration hard_timeout = std::chrono::seconds(1);
  duration backoff_min = std::chrono::milliseconds(50);
  duration backoff_max = std::chrono::seconds(2);
  duration probe_ttl = std::chrono::seconds(1);  // a lost probe lets another open the window
  std::string sidecar_id;                        // empty: hostname-pid-random

  // From `fleet` and `rate_limit`; throws std::runtime_error naming fleet.redis if unusable.
  static fleet_service_settings from_config(const config::config& c);
};

// The Redis-backed ledger client and the fleet_store it feeds.
class fleet_service {
 public:
  fleet_service(asio::io_context& ioc, fleet_service_settings s, const clock_source& clock,
                const logging::log& log, metrics::registry& registry);
  ~fleet_service();
  fleet_service(const fleet_service&) = delete;
  fleet_service& operator=(const fleet_service&) = delete;

  // The bucket_store to give the scheduler (call once; it shares this service's fleet_store).
  std::unique_ptr<ratelimit::bucket_store> make_store();
  void start();
  void stop();
  // The "fleet" object of /status.
  nlohmann::json status() const;
  ratelimit::fleet_mode mode() const;

 private:
  struct shared;
  // Connection state of run()'s loop, kept between its stages.
  struct link_state;
  asio::awaitable<void> run();
  asio::awaitable<boost::system::error_code> setup();
  // Connects (with jittered backoff while Redis is away); false: try again later.
  asio::awaitable<bool> reconnect(link_state&);
  // The EVALSHA commands for this round's lease requests and heartbeat.
  void build_commands(const std::vector<ratelimit::lease_request>&,
                      const std::optional<ratelimit::heartbeat_request>&,
                      std::vector<std::string>& cmds) const;
  // Hands Redis's replies to the store (under shared_->mu); true: the scripts must be reloaded.
  bool apply_replies(const std::vector<ratelimit::lease_request>&,
                     const std::optional<ratelimit::heartbeat_request>&, const std::vector<redis_value>&,
                     time_point done);
  void log_transition();  // under shared_->mu
  void wake();

  fleet_service_settings settings_;
  const clock_source& clock_;
  const logging::log& log_;
  std::shared_ptr<shared> shared_;
  asio::strand<asio::io_context::executor_type> strand_;
  asio::steady_timer wake_timer_;
  std::unique_ptr<asio::ssl::context> tls_ctx_;
  std::unique_ptr<redis_connection> conn_;
  std::string lease_sha_, heartbeat_sha_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> connected_{false};
  std::string last_error_;  // guarded by shared_->mu
  metrics::histogram* latency_ = nullptr;
  metrics::family<metrics::counter>* redis_errors_ = nullptr;
};

}  // namespace okta_sidecar::fleet
