#pragma once
// Kept-alive upstream connections per origin (scheme, host, port): connect with deadlines,
// TLS with SNI and hostname verification, reuse across client connections, bounded per origin.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <compare>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/config/config.hpp"
#include "okta_sidecar/net/parking.hpp"
#include "okta_sidecar/net/stream.hpp"

namespace okta_sidecar::upstream {

namespace asio = boost::asio;
namespace beast = boost::beast;

// Where a request goes. `host` is the name used for SNI, the certificate check and Host.
struct origin {
  bool tls = true;
  std::string host;
  std::uint16_t port = 443;
  auto operator<=>(const origin&) const = default;
};

// One connection to an origin, plain or TLS, with the bytes read past the last response.
class connection {
 public:
  connection(std::uint64_t id, net::stream s) : id_(id), stream_(std::move(s)) {}

  bool is_tls() const { return stream_.is_tls(); }
  net::stream& stream() { return stream_; }
  net::stream& lowest() { return stream_; }
  beast::flat_buffer& buffer() { return buffer_; }
  std::uint64_t id() const { return id_; }
  std::uint32_t requests() const { return requests_; }
  void count_request() { ++requests_; }
  time_point idle_since{};
  // TLS record buffers kept between requests: set when the pool hands the connection out again
  // (within its budget), cleared when a sweep frees them after buffer_linger idle (see
  // connection_pool::sweep).
  bool keeps_buffers = false;

 private:
  std::uint64_t id_;
  net::stream stream_;
  // Bounded like the client side: only a response head, chunk header or trailer must fit, and
  // Beast throws on a field it cannot store (see config::max_head_bytes).
  beast::flat_buffer buffer_{config::max_head_bytes};
  std::uint32_t requests_ = 0;
};

enum class connect_status {
  ok,
  resolve_failed,
  forbidden_address,  // resolved to link-local/private/loopback without explicit permission
  connect_failed,
  connect_timeout,
  tls_failed,
  tls_timeout,
  pool_exhausted,  // max_connections_per_host busy until the deadline
};
const char* to_string(connect_status);

struct acquired {
  std::unique_ptr<connection> conn;
  connect_status status = connect_status::ok;
  std::string detail;  // safe for logs
  bool reused = false;
};

struct pool_stats {
  std::uint64_t opened = 0, reused = 0, closed = 0;
  std::uint64_t unsolicited = 0;  // idle connections discarded because the server sent bytes unasked
  std::size_t idle = 0, active = 0;
  std::size_t idle_keeping_buffers = 0;  // idle TLS connections still holding their record buffers
  std::size_t origins = 0;               // slots kept (origins with a connection or a waiter)
};

class connection_pool {
 public:
  struct settings {
    duration connect_timeout = std::chrono::seconds(5);
    duration tls_timeout = std::chrono::seconds(5);
    duration idle_timeout = std::chrono::seconds(60);
    std::uint32_t max_per_origin = 64;
    // How long an idle TLS connection keeps its record buffers (up to 34 KiB) after its last use.
    duration buffer_linger = std::chrono::seconds(1);
    std::map<std::string, config::endpoint> resolve;  // "host:port" -> address
    bool allow_private = false;
  };
  static settings from_config(const config::config&);

  connection_pool(asio::ssl::context& tls_ctx, settings s);

  // Pops a live idle connection or opens a new one (within `deadline`), on the caller's executor.
  asio::awaitable<acquired> acquire(const origin&, time_point deadline);
  // acquire()'s common case without a coroutine: a live idle connection of the loop that runs
  // `ex`, or null (then acquire() waits, connects or says why not).
  std::unique_ptr<connection> take_idle(const origin&, const asio::any_io_executor& ex);
  // Back to the idle list when `reusable`, else closed; wakes one waiter of that origin.
  void release(const origin&, std::unique_ptr<connection>, bool reusable);
  // Upkeep, about once a second, from any thread. A reused TLS connection keeps OpenSSL's record
  // buffers between requests, as a busy client connection does (allocating and freeing both per
  // request cost about 2.5 % of an intercepted request's CPU), up to kept_buffers_limit
  // connections; the sweep frees them once the connection has been idle for buffer_linger, and
  // closes the connections idle past idle_timeout, which acquire() otherwise does only when its
  // origin is asked for again.
  void sweep(time_point now);
  // A new connection outside the pool's accounting (blind tunnels use it).
  asio::awaitable<acquired> connect(const origin&, time_point deadline);
  void update_settings(settings s);
  void close_all();
  pool_stats stats() const;

 private:
  struct slot {
    std::deque<std::unique_ptr<connection>> idle;
    std::uint32_t active = 0;  // handed out or connecting
    // Coroutines parked until a connection of this origin is released or their deadline passes.
    std::deque<std::shared_ptr<net::parking_spot<>>> waiters;
  };
  void wake_one(slot&);
  // An idle connection handed out, counted as active and reused; under the lock.
  std::unique_ptr<connection> take_locked(slot&, std::deque<std::unique_ptr<connection>>::reverse_iterator);
  // `c` when the server has neither closed it nor sent anything since; else closed and uncounted.
  std::unique_ptr<connection> keep_if_alive(const origin&, std::unique_ptr<connection> c);
  void close_expired(slot&, time_point now);
  void discard(connection&);  // closes it and forgets its kept buffers; under the lock
  void prune(std::map<origin, slot>::iterator);

  asio::ssl::context& tls_ctx_;
  mutable std::mutex mu_;
  settings settings_;
  std::map<origin, slot> slots_;
  std::uint64_t next_id_ = 1;
  // Reused TLS connections keeping their record buffers: at most kept_buffers_limit (about
  // 34 KiB each), the hottest ones, so a burst that grows the pool does not grow the heap's
  // high-water mark by 34 KiB per connection it opened.
  static constexpr std::size_t kept_buffers_limit = 16;
  std::size_t kept_ = 0;
  pool_stats stats_;
  bool closed_ = false;
};

}  // namespace okta_sidecar::upstream
