#pragma once
// The sd_notify protocol without libsystemd: newline-separated KEY=VALUE assignments sent as
// one datagram to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" for the
// Linux abstract namespace). Documented in sd_notify(3) ("Notes: ... the protocol") and
// systemd.service(5) (Type=notify, WatchdogSec=). Every call is a no-op returning false when
// $NOTIFY_SOCKET is unset, so the binary behaves the same outside systemd.
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace okta_sidecar::admin {

// Sends `state` to the socket at `socket_address` ("/path" or "@abstract").
std::error_code send_notify(std::string_view socket_address, std::string_view state);

// Sends `state` to $NOTIFY_SOCKET. Returns true when a datagram was delivered; false when
// the variable is unset or the send failed (the service manager is then simply not told).
bool notify(std::string_view state);

bool notify_ready();     // READY=1: listening and the CA is loaded
bool notify_stopping();  // STOPPING=1: drain has begun
// RELOADING=1 + MONOTONIC_USEC (CLOCK_MONOTONIC, µs): systemd >= 253 needs the timestamp to
// match the reload to this message; older ones ignore it. Follow with notify_reloaded().
bool notify_reloading();
bool notify_reloaded();                     // READY=1 after a reload finished (or failed)
bool notify_watchdog();                     // WATCHDOG=1 keep-alive ping
bool notify_status(std::string_view text);  // STATUS=<one line>, shown by systemctl status

// How often to ping: half of $WATCHDOG_USEC (sd_watchdog_enabled(3) advises pinging at half
// the timeout), or nullopt when no watchdog is configured, the value is not a positive
// integer, or $WATCHDOG_PID names another process.
std::optional<std::chrono::microseconds> watchdog_interval();

// Pings the watchdog from a timer on the io_context: a ping proves the event loop still
// turns, which is what the watchdog is meant to catch. Does nothing without a watchdog.
// start() and stop() may be called from any thread.
class watchdog_pinger {
 public:
  watchdog_pinger(boost::asio::io_context& ioc, std::optional<std::chrono::microseconds> interval);
  ~watchdog_pinger();
  watchdog_pinger(const watchdog_pinger&) = delete;
  watchdog_pinger& operator=(const watchdog_pinger&) = delete;

  bool enabled() const { return interval_.has_value(); }
  void start();  // first ping at once, then every interval
  void stop();

  struct state;

 private:
  std::shared_ptr<state> state_;
  std::optional<std::chrono::microseconds> interval_;
};

}  // namespace okta_sidecar::admin
