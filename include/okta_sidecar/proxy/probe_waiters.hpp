#pragma once
// Requests held while a host's half-open probe is out (a `hold` permit of
// resilience::breaker_board): each parks on a net::parking_spot of its own event loop until the
// board reports the probe's outcome (wake) or the request's deadline passes; then it asks the
// board again. A request registers before it asks the board: a probe that reports on another
// thread between the board's answer and the wait still wakes it.
#include <boost/asio/any_io_executor.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "okta_sidecar/net/parking.hpp"

namespace okta_sidecar::proxy {

namespace asio = boost::asio;

class probe_waiters {
 public:
  using spot = std::shared_ptr<net::parking_spot<>>;
  // Registers a request for the next wake of `host`, on its session's executor `ex`; then ask
  // the board, wait on the spot if it still says hold, and release it either way.
  spot hold(const std::string& host, asio::any_io_executor ex);
  void release(const std::string& host, const spot&);
  // Resumes every request held for `host`, each on its own loop.
  void wake(const std::string& host);

 private:
  std::mutex mu_;
  // An entry lives only while a request is registered.
  std::map<std::string, std::vector<spot>> held_;
};

}  // namespace okta_sidecar::proxy
