#pragma once
// The breakers every session shares: one circuit breaker per upstream host plus the retry
// budget, behind one mutex, and the requests parked until a half-open probe reports. The
// decisions stay in the pure breaker_table / retry_budget; this class adds the lock and the
// Asio timers that park requests, so it is built into io_resilience, not core_resilience.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/resilience/breaker_table.hpp"
#include "okta_sidecar/resilience/circuit_breaker.hpp"
#include "okta_sidecar/resilience/retry_budget.hpp"
#include "okta_sidecar/resilience/retry_policy.hpp"

namespace okta_sidecar::resilience {

namespace asio = boost::asio;

// One circuit breaker per upstream host, plus the shared retry budget.
class breaker_board {
 public:
  explicit breaker_board(breaker_settings s, retry_settings r) : breakers_(s), budget_(r) {}
  permit try_acquire(const std::string& host, time_point now);
  void record(const std::string& host, outcome, bool probe, time_point now);
  void release_probe(const std::string& host, time_point now);
  // For a `hold` permit: resumes once the host's probes report (record or release_probe), or
  // at `deadline`; the caller asks try_acquire again.
  asio::awaitable<void> wait_for_probe(const std::string& host, time_point deadline);
  void on_request(time_point now);
  bool try_spend_retry(time_point now);
  struct host_state {
    std::string host;
    breaker_state state;
    duration retry_after;
    std::uint64_t opened;
  };
  std::vector<host_state> states(time_point now) const;
  void update_settings(const breaker_settings&, const retry_settings&);
  std::size_t size() const;

 private:
  void wake_locked(const std::string& host);
  mutable std::mutex mu_;
  breaker_table breakers_;  // bounded: hosts under a wildcard are client-chosen
  // Requests waiting for a half-open probe's outcome; an entry lives only while one waits.
  std::map<std::string, std::vector<std::shared_ptr<asio::steady_timer>>> held_;
  retry_budget budget_;
};

}  // namespace okta_sidecar::resilience
