#pragma once
// A stream's deadline: absolute (`at`), or a duration that starts at the first wait after it
// (`after`), so that an operation that completes without waiting reads no clock (about 25 ns a
// read here). Once a wait has fixed it, it holds for every later wait until the next `at` or
// `after`: a head trickled in pieces does not renew it. Pure: the caller passes the time.
#include "okta_sidecar/clock.hpp"

namespace okta_sidecar::net {

class lazy_deadline {
 public:
  void after(duration d) {
    after_ = d;
    pending_ = true;
  }
  void at(time_point t) {
    at_ = t;
    pending_ = false;
  }
  // No deadline at all (never, or nothing set): a wait needs no timer.
  bool none() const { return !pending_ && at_ == time_point::max(); }
  // The deadline of a wait that starts at `now`.
  time_point arm(time_point now) {
    if (pending_) at(now + after_);
    return at_;
  }

 private:
  time_point at_ = time_point::max();
  duration after_{};
  bool pending_ = false;
};

}  // namespace okta_sidecar::net
