#include "okta_sidecar/net/deadline_list.hpp"

namespace okta_sidecar::net {

void deadline_list::add(deadline_hook& h, time_point deadline) {
  remove(h);
  h.deadline = deadline;
  h.linked = true;
  ++size_;
  // After `at` (null: at the head).
  deadline_hook* at = tail_;
  for (std::size_t steps = 0; at != nullptr && at->deadline > deadline && steps < max_walk; ++steps) {
    at = at->prev;
  }
  h.prev = at;
  h.next = at != nullptr ? at->next : head_;
  (h.prev != nullptr ? h.prev->next : head_) = &h;
  (h.next != nullptr ? h.next->prev : tail_) = &h;
}

void deadline_list::remove(deadline_hook& h) {
  if (!h.linked) return;
  (h.prev != nullptr ? h.prev->next : head_) = h.next;
  (h.next != nullptr ? h.next->prev : tail_) = h.prev;
  h.prev = h.next = nullptr;
  h.linked = false;
  --size_;
}

time_point deadline_list::next_deadline() const {
  return head_ != nullptr ? head_->deadline : time_point::max();
}

deadline_hook* deadline_list::pop_expired(time_point now) {
  deadline_hook* h = head_;
  if (h == nullptr || h->deadline > now) return nullptr;
  remove(*h);
  return h;
}

}  // namespace okta_sidecar::net
