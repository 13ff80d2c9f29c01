#pragma once
// The breakers every session shares: one circuit breaker per upstream host plus the retry
// budget, behind one mutex. The decisions stay in the pure breaker_table / retry_budget; this
// class adds only the lock, and tells a listener when a half-open probe reports, so the shell
// can wake the requests it held meanwhile (proxy::probe_waiters). No I/O.
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/resilience/breaker_table.hpp"
#include "okta_sidecar/resilience/circuit_breaker.hpp"
#include "okta_sidecar/resilience/retry_budget.hpp"
#include "okta_sidecar/resilience/retry_policy.hpp"

namespace okta_sidecar::resilience {

// One circuit breaker per upstream host, plus the shared retry budget.
class breaker_board {
 public:
  // Called when a host's half-open probe reports (record() of a probe, or release_probe()),
  // under the board's lock: it must be short and must not call back into the board.
  using probe_listener = std::function<void(const std::string& host)>;

  breaker_board(breaker_settings s, retry_settings r, probe_listener on_probe_report = {})
      : breakers_(s), budget_(r), on_probe_report_(std::move(on_probe_report)) {}
  permit try_acquire(const std::string& host, time_point now);
  void record(const std::string& host, outcome, bool probe, time_point now);
  void release_probe(const std::string& host, time_point now);
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
  mutable std::mutex mu_;
  breaker_table breakers_;  // bounded: hosts under a wildcard are client-chosen
  retry_budget budget_;
  probe_listener on_probe_report_;
};

}  // namespace okta_sidecar::resilience
