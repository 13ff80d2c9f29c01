#pragma once
// Deadlines that arrive almost in order, behind one timer: the keep-alive timeouts of a worker's
// parked connections, each counted from that connection's last response. Pure: the caller passes
// the time and owns the timer.
#include <cstddef>

#include "okta_sidecar/clock.hpp"

namespace okta_sidecar::net {

// A list member embeds (or derives from) one hook.
struct deadline_hook {
  deadline_hook* prev = nullptr;
  deadline_hook* next = nullptr;
  time_point deadline{};
  bool linked = false;
};

// An intrusive list sorted by deadline. Adding walks back from the tail, where a new deadline
// nearly always belongs; the walk stops after `max_walk` members so that a burst of earlier
// deadlines (a reload that shortened the timeout) costs no more than that. A member placed
// there may expire late, behind a later one, never early.
class deadline_list {
 public:
  static constexpr std::size_t max_walk = 32;

  deadline_list() = default;
  deadline_list(const deadline_list&) = delete;
  deadline_list& operator=(const deadline_list&) = delete;

  void add(deadline_hook& h, time_point deadline);
  // A member that is not linked is left alone.
  void remove(deadline_hook& h);
  // The first member's deadline; time_point::max() when empty.
  time_point next_deadline() const;
  // Unlinks and returns the first member when its deadline is not after `now`; null otherwise.
  deadline_hook* pop_expired(time_point now);
  bool empty() const { return head_ == nullptr; }
  std::size_t size() const { return size_; }

 private:
  deadline_hook* head_ = nullptr;
  deadline_hook* tail_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace okta_sidecar::net
