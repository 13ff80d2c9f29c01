#pragma once
// Circuit breakers by upstream host, bounded (issue 14): hosts come from client requests under
// wildcard intercept patterns (*.okta.com), so the table may not grow with every name a client
// makes up. Pure: time is passed in.
#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/resilience/circuit_breaker.hpp"

namespace okta_sidecar::resilience {

// Breakers keyed by host: a closed breaker unused for `idle_ttl` is dropped (it knows nothing
// worth keeping), and at `max_hosts` the least recently used one makes room, closed ones first
// (an open breaker is evicted only when every entry is open).
class breaker_table {
 public:
  struct limits {
    std::size_t max_hosts = 1024;
    duration idle_ttl = std::chrono::minutes(10);
  };

  explicit breaker_table(breaker_settings s);
  breaker_table(breaker_settings s, limits l);

  // The host's breaker, created closed on first use; may evict another host's entry.
  circuit_breaker& at(const std::string& host, time_point now);
  // Drops closed entries idle for idle_ttl (at() runs it every idle_ttl/8).
  void sweep(time_point now);
  void for_each(const std::function<void(const std::string&, const circuit_breaker&)>& f) const;
  void update_settings(const breaker_settings& s);
  std::size_t size() const { return map_.size(); }

 private:
  struct entry {
    circuit_breaker breaker;
    time_point last_used;
  };
  void evict_one(time_point now);

  breaker_settings settings_;
  limits limits_;
  std::map<std::string, entry, std::less<>> map_;
  time_point last_sweep_{};
  bool swept_ = false;
};

}  // namespace okta_sidecar::resilience
