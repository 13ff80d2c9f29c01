#include "okta_sidecar/admin/systemd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace okta_sidecar::admin {

namespace asio = boost::asio;

namespace {

// Closes the descriptor on every path out of send_notify.
struct fd_guard {
  int fd;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
};

std::optional<std::uint64_t> parse_u64(const char* s) {
  if (!s || !*s) return std::nullopt;
  std::uint64_t v = 0;
  const char* end = s + std::strlen(s);
  const auto [p, ec] = std::from_chars(s, end, v);
  if (ec != std::errc{} || p != end) return std::nullopt;
  return v;
}

}  // namespace

std::error_code send_notify(std::string_view socket_address, std::string_view state) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // "@name" is the abstract namespace: sun_path starts with NUL and the length, not a
  // terminator, delimits the name (unix(7)). Only absolute paths are valid otherwise.
  const bool abstract = socket_address.starts_with('@');
  if (socket_address.size() < 2 || (!abstract && !socket_address.starts_with('/'))) {
    return std::make_error_code(std::errc::invalid_argument);
  }
  if (socket_address.size() >= sizeof(addr.sun_path)) {
    return std::make_error_code(std::errc::filename_too_long);
  }
  std::memcpy(addr.sun_path, socket_address.data(), socket_address.size());
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_address.size());
  if (abstract) {
    addr.sun_path[0] = '\0';
  } else {
    len += 1;  // include the terminating NUL, as sd_notify does for path sockets
  }

  fd_guard s{::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
  if (s.fd < 0) return {errno, std::generic_category()};
  const ssize_t n =
      ::sendto(s.fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr), len);
  if (n < 0) return {errno, std::generic_category()};
  if (static_cast<std::size_t>(n) != state.size()) return std::make_error_code(std::errc::message_size);
  return {};
}

bool notify(std::string_view state) {
  const char* sock = std::getenv("NOTIFY_SOCKET");
  if (!sock || !*sock) return false;
  return !send_notify(sock, state);
}

bool notify_ready() { return notify("READY=1\nSTATUS=serving"); }
bool notify_stopping() { return notify("STOPPING=1\nSTATUS=draining"); }
bool notify_reloaded() { return notify("READY=1\nSTATUS=serving"); }
bool notify_watchdog() { return notify("WATCHDOG=1"); }

bool notify_reloading() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const auto usec =
      static_cast<std::uint64_t>(ts.tv_sec) * 1000000u + static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
  return notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=reloading");
}

bool notify_status(std::string_view text) {
  // STATUS is one assignment per line; a newline in the text would start a bogus one.
  std::string line(text);
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return notify("STATUS=" + line);
}

std::optional<std::chrono::microseconds> watchdog_interval() {
  const auto usec = parse_u64(std::getenv("WATCHDOG_USEC"));
  if (!usec || *usec == 0) return std::nullopt;
  // WATCHDOG_PID, when present, says which process the watchdog is meant for; a child that
  // inherited the environment must not ping on its parent's behalf (sd_watchdog_enabled(3)).
  if (const char* pid_text = std::getenv("WATCHDOG_PID"); pid_text && *pid_text) {
    const auto pid = parse_u64(pid_text);
    if (!pid || *pid != static_cast<std::uint64_t>(::getpid())) return std::nullopt;
  }
  return std::chrono::microseconds(static_cast<std::int64_t>(*usec / 2));
}

struct watchdog_pinger::state {
  explicit state(asio::io_context& ioc) : strand(asio::make_strand(ioc)), timer(strand) {}
  asio::strand<asio::io_context::executor_type> strand;  // owns the timer
  asio::steady_timer timer;
  std::atomic<bool> stopped{false};
  std::atomic<bool> started{false};
};

watchdog_pinger::watchdog_pinger(asio::io_context& ioc, std::optional<std::chrono::microseconds> interval)
    : state_(std::make_shared<state>(ioc)), interval_(interval) {}

watchdog_pinger::~watchdog_pinger() { stop(); }

void watchdog_pinger::start() {
  if (!interval_ || state_->started.exchange(true)) return;
  asio::co_spawn(
      state_->strand,
      [st = state_, every = *interval_]() -> asio::awaitable<void> {
        while (!st->stopped.load()) {
          notify_watchdog();
          st->timer.expires_after(every);
          co_await st->timer.async_wait(asio::as_tuple(asio::use_awaitable));
        }
      },
      asio::detached);
}

void watchdog_pinger::stop() {
  if (state_->stopped.exchange(true)) return;
  asio::post(state_->strand, [st = state_] { st->timer.cancel(); });
}

}  // namespace okta_sidecar::admin
