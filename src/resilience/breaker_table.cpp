#include "okta_sidecar/resilience/breaker_table.hpp"

#include <algorithm>

namespace okta_sidecar::resilience {

breaker_table::breaker_table(breaker_settings s) : breaker_table(s, limits{}) {}
breaker_table::breaker_table(breaker_settings s, limits l) : settings_(s), limits_(l) {}

circuit_breaker& breaker_table::at(const std::string& host, time_point now) {
  sweep(now);
  auto it = map_.find(host);
  if (it == map_.end()) {
    if (map_.size() >= std::max<std::size_t>(1, limits_.max_hosts)) evict_one(now);
    it = map_.emplace(host, entry{circuit_breaker(settings_), now}).first;
  }
  it->second.last_used = now;
  return it->second.breaker;
}

void breaker_table::sweep(time_point now) {
  const duration every = std::max<duration>(limits_.idle_ttl / 8, std::chrono::milliseconds(1));
  if (swept_ && now - last_sweep_ < every) return;
  swept_ = true;
  last_sweep_ = now;
  std::erase_if(map_, [&](const auto& kv) {
    return kv.second.breaker.state(now) == breaker_state::closed &&
           now - kv.second.last_used >= limits_.idle_ttl;
  });
}

void breaker_table::evict_one(time_point now) {
  auto victim = map_.end();
  bool victim_closed = false;
  for (auto it = map_.begin(); it != map_.end(); ++it) {
    const bool closed = it->second.breaker.state(now) == breaker_state::closed;
    if (victim == map_.end() || (closed && !victim_closed) ||
        (closed == victim_closed && it->second.last_used < victim->second.last_used)) {
      victim = it;
      victim_closed = closed;
    }
  }
  if (victim != map_.end()) map_.erase(victim);
}

void breaker_table::for_each(const std::function<void(const std::string&, const circuit_breaker&)>& f) const {
  for (const auto& [host, e] : map_) f(host, e.breaker);
}

void breaker_table::update_settings(const breaker_settings& s) {
  settings_ = s;
  for (auto& [host, e] : map_) e.breaker.update_settings(s);
}

}  // namespace okta_sidecar::resilience
