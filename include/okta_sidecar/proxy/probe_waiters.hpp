#pragma once
// Requests held while a host's half-open probe is out (a `hold` permit of
// resilience::breaker_board): each parks on a net::parking_spot of its own event loop until the
// board reports the probe's outcome (wake) or the request's deadline passes; then it asks the
// board again.
#include <boost/asio/awaitable.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/net/parking.hpp"

namespace okta_sidecar::proxy {

namespace asio = boost::asio;

class probe_waiters {
 public:
  asio::awaitable<void> wait(const std::string& host, time_point deadline);
  // Resumes every request held for `host`, each on its own loop.
  void wake(const std::string& host);

 private:
  std::mutex mu_;
  // An entry lives only while a request waits.
  std::map<std::string, std::vector<std::shared_ptr<net::parking_spot<>>>> held_;
};

}  // namespace okta_sidecar::proxy
