#include "okta_sidecar/resilience/breaker_board.hpp"

namespace okta_sidecar::resilience {

permit breaker_board::try_acquire(const std::string& host, time_point now) {
  std::lock_guard lock(mu_);
  return breakers_.at(host, now).try_acquire(now);
}

void breaker_board::record(const std::string& host, outcome o, bool probe, time_point now) {
  std::lock_guard lock(mu_);
  breakers_.at(host, now).record(o, probe, now);
  if (probe && on_probe_report_) on_probe_report_(host);
}

void breaker_board::release_probe(const std::string& host, time_point now) {
  std::lock_guard lock(mu_);
  breakers_.at(host, now).release_probe(now);
  if (on_probe_report_) on_probe_report_(host);
}

void breaker_board::on_request(time_point now) {
  std::lock_guard lock(mu_);
  budget_.on_request(now);
}

bool breaker_board::try_spend_retry(time_point now) {
  std::lock_guard lock(mu_);
  return budget_.try_spend(now);
}

std::vector<breaker_board::host_state> breaker_board::states(time_point now) const {
  std::lock_guard lock(mu_);
  std::vector<host_state> out;
  breakers_.for_each([&](const std::string& host, const circuit_breaker& b) {
    auto st = b.state(now);
    duration retry_after{};
    if (st == breaker_state::open) {
      auto copy = b;  // try_acquire mutates; ask a copy how long is left
      retry_after = copy.try_acquire(now).retry_after;
    }
    out.push_back({host, st, retry_after, b.opened_count()});
  });
  return out;
}

void breaker_board::update_settings(const breaker_settings& b, const retry_settings& r) {
  std::lock_guard lock(mu_);
  breakers_.update_settings(b);
  budget_.update_settings(r);
}

std::size_t breaker_board::size() const {
  std::lock_guard lock(mu_);
  return breakers_.size();
}

}  // namespace okta_sidecar::resilience
