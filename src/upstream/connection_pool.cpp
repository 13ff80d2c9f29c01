#include "okta_sidecar/upstream/connection_pool.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <ctime>

#include "okta_sidecar/policy/address_guard.hpp"
#include "okta_sidecar/tls/upstream_context.hpp"

namespace okta_sidecar::upstream {

using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

const char* to_string(connect_status s) {
  switch (s) {
    case connect_status::ok:
      return "ok";
    case connect_status::resolve_failed:
      return "resolve_failed";
    case connect_status::forbidden_address:
      return "forbidden_address";
    case connect_status::connect_failed:
      return "connect_failed";
    case connect_status::connect_timeout:
      return "connect_timeout";
    case connect_status::tls_failed:
      return "tls_failed";
    case connect_status::tls_timeout:
      return "tls_timeout";
    case connect_status::pool_exhausted:
      return "pool_exhausted";
  }
  return "unknown";
}

connection_pool::settings connection_pool::from_config(const config::config& c) {
  settings s;
  s.connect_timeout = milliseconds(c.upstream.connect_timeout_ms);
  s.tls_timeout = milliseconds(c.upstream.tls_handshake_timeout_ms);
  s.idle_timeout = milliseconds(c.upstream.idle_timeout_ms);
  s.max_per_origin = c.upstream.max_connections_per_host;
  s.resolve = c.upstream.resolve;
  s.allow_private = c.access.allow_private_destinations;
  return s;
}

connection_pool::connection_pool(asio::ssl::context& tls_ctx, settings s)
    : tls_ctx_(tls_ctx), settings_(std::move(s)) {}

namespace {

// The idle list's times need milliseconds, not nanoseconds (timeouts of seconds, a buffer linger
// of one): the kernel's coarse monotonic clock, steady_clock's own clock read at tick resolution
// (4 ms here), costs a quarter of a precise read, and the pool reads it twice per request. It lags
// the precise clock by less than a tick, so an idle connection may expire that much early.
time_point coarse_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return time_point(std::chrono::duration_cast<duration>(std::chrono::seconds(ts.tv_sec) +
                                                         std::chrono::nanoseconds(ts.tv_nsec)));
}

enum class idle_check { alive, closed, unsolicited };

// What arrived on an idle pooled connection. Nothing: it may serve the next request. EOF or an
// error: the server closed it. A byte: the server sent something nobody asked for (stray bytes,
// a late response, a TLS alert or close_notify) that the next request would read as its
// response, so the connection is discarded. TLS 1.3 session tickets do not count: servers send
// them right after the handshake, and they were consumed with the first response.
idle_check check_idle(connection& c) {
  auto& sock = c.lowest().socket();
  if (!sock.is_open()) return idle_check::closed;
  if (c.lowest().has_buffered_input()) return idle_check::unsolicited;
  char byte;
  ssize_t n = ::recv(sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return idle_check::closed;
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? idle_check::alive : idle_check::closed;
  return idle_check::unsolicited;
}

void close_quietly(connection& c) {
  boost::system::error_code ec;
  c.lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
  c.lowest().socket().close(ec);
}

bool same_loop(connection& c, const asio::any_io_executor& ex) {
  return &asio::query(c.lowest().get_executor(), asio::execution::context) ==
         &asio::query(ex, asio::execution::context);
}

// The newest idle connection of the loop that runs `ex`, or rend.
template <class Idle>
auto newest_of_loop(Idle& idle, const asio::any_io_executor& ex) {
  return std::find_if(idle.rbegin(), idle.rend(), [&ex](const auto& i) { return same_loop(*i, ex); });
}

}  // namespace

std::unique_ptr<connection> connection_pool::take_locked(
    slot& s, std::deque<std::unique_ptr<connection>>::reverse_iterator pick) {
  // Counted as active (and reused) while it is checked outside the lock.
  auto c = std::move(*pick);
  s.idle.erase(std::next(pick).base());
  ++s.active;
  ++stats_.reused;
  if (c->is_tls() && !c->keeps_buffers && kept_ < kept_buffers_limit) {
    c->keeps_buffers = true;
    ++kept_;
  }
  return c;
}

std::unique_ptr<connection> connection_pool::keep_if_alive(const origin& o, std::unique_ptr<connection> c) {
  // A syscall: not under the lock, which every worker's requests take.
  const auto state = check_idle(*c);
  if (state == idle_check::alive) {
    if (c->keeps_buffers) c->stream().keep_buffers();
    return c;
  }
  std::lock_guard lock(mu_);
  discard(*c);
  auto& s = slots_[o];
  if (s.active > 0) --s.active;
  --stats_.reused;
  if (state == idle_check::unsolicited) ++stats_.unsolicited;
  wake_one(s);  // room for a new connection, unless this loop takes it first
  return nullptr;
}

std::unique_ptr<connection> connection_pool::take_idle(const origin& o, const asio::any_io_executor& ex) {
  std::unique_ptr<connection> c;
  {
    std::lock_guard lock(mu_);
    const auto it = slots_.find(o);
    if (closed_ || it == slots_.end()) return nullptr;
    auto& s = it->second;
    close_expired(s, coarse_now());
    const auto pick = newest_of_loop(s.idle, ex);
    if (pick == s.idle.rend()) return nullptr;
    c = take_locked(s, pick);
  }
  return keep_if_alive(o, std::move(c));
}

asio::awaitable<acquired> connection_pool::acquire(const origin& o, time_point deadline) {
  auto ex = co_await asio::this_coro::executor;
  std::shared_ptr<net::parking_spot<>> me;
  for (;;) {
    std::unique_ptr<connection> c;
    {
      std::unique_lock lock(mu_);
      if (closed_) co_return acquired{nullptr, connect_status::connect_failed, "shutting down", false};
      auto& s = slots_[o];
      if (me) std::erase(s.waiters, me);
      auto now = steady_clock::now();
      close_expired(s, now);
      // Newest first, of this thread's own loop. Another worker's connection works too, but its
      // I/O is then watched by that worker's loop: taken only when no new one may open.
      auto pick = newest_of_loop(s.idle, ex);
      if (pick == s.idle.rend() && s.active >= settings_.max_per_origin) pick = s.idle.rbegin();
      if (pick != s.idle.rend()) {
        c = take_locked(s, pick);
      } else if (s.active < settings_.max_per_origin) {
        ++s.active;
        break;
      } else if (now >= deadline) {
        co_return acquired{nullptr, connect_status::pool_exhausted, "max_connections_per_host busy", false};
      } else {
        me = net::parking_spot<>::make(ex);  // a new spot each time: a late wake of the last one goes nowhere
        s.waiters.push_back(me);
      }
    }
    if (!c) {
      co_await me->wait(deadline);  // woken (a connection came back), due or cancelled: look again
      continue;
    }
    if (auto alive = keep_if_alive(o, std::move(c)))
      co_return acquired{std::move(alive), connect_status::ok, {}, true};
  }
  auto result = co_await connect(o, deadline);
  if (!result.conn) {
    std::lock_guard lock(mu_);
    auto it = slots_.find(o);
    if (it != slots_.end()) {
      if (it->second.active > 0) --it->second.active;
      wake_one(it->second);
      prune(it);
    }
  }
  co_return result;
}

asio::awaitable<acquired> connection_pool::connect(const origin& o, time_point deadline) {
  auto ex = co_await asio::this_coro::executor;
  settings cfg;
  std::uint64_t id;
  {
    std::lock_guard lock(mu_);
    cfg = settings_;
    id = next_id_++;
  }
  const auto now = steady_clock::now();
  const auto connect_deadline = std::min(deadline, now + cfg.connect_timeout);

  // upstream.resolve: like curl --resolve, only the address changes; SNI, certificate check
  // and Host keep the real name.
  std::string host = o.host;
  std::string port = std::to_string(o.port);
  bool explicit_address = false;
  if (auto it = cfg.resolve.find(o.host + ":" + port); it != cfg.resolve.end()) {
    host = it->second.host;
    port = std::to_string(it->second.port);
    explicit_address = true;
  }
  tcp::resolver resolver(ex);
  asio::steady_timer resolve_timer(ex, connect_deadline);
  auto r = co_await (resolver.async_resolve(host, port, use_tuple) || resolve_timer.async_wait(use_tuple));
  if (r.index() == 1) co_return acquired{nullptr, connect_status::connect_timeout, "dns timeout", false};
  auto [rec, results] = std::get<0>(r);
  if (rec) co_return acquired{nullptr, connect_status::resolve_failed, rec.message(), false};

  std::vector<tcp::endpoint> endpoints;
  for (const auto& e : results) {
    if (!explicit_address && !cfg.allow_private &&
        policy::is_forbidden_destination(e.endpoint().address().to_string())) {
      continue;
    }
    endpoints.push_back(e.endpoint());
  }
  if (endpoints.empty()) {
    co_return acquired{nullptr, connect_status::forbidden_address,
                       "resolves only to link-local, loopback or private addresses", false};
  }

  auto stream = std::make_unique<beast::tcp_stream>(ex);
  stream->expires_at(connect_deadline);
  auto [cec, ep] = co_await stream->async_connect(endpoints, use_tuple);
  if (cec) {
    co_return acquired{
        nullptr,
        cec == beast::error::timeout ? connect_status::connect_timeout : connect_status::connect_failed,
        cec.message(), false};
  }
  stream->socket().set_option(tcp::no_delay(true));
  {
    std::lock_guard lock(mu_);
    ++stats_.opened;
  }
  net::stream s(stream->release_socket());
  if (!o.tls)
    co_return acquired{std::make_unique<connection>(id, std::move(s)), connect_status::ok, {}, false};
  if (!s.start_tls(tls_ctx_.native_handle(), net::stream::role::client) ||
      !tls::prepare_upstream_ssl(s.native_handle(), o.host)) {
    co_return acquired{nullptr, connect_status::tls_failed, "cannot set SNI/verification name", false};
  }
  s.expires_at(std::min(deadline, steady_clock::now() + cfg.tls_timeout));
  auto [hec, hn] = co_await s.async_handshake(use_tuple);
  if (hec) {
    co_return acquired{
        nullptr, hec == beast::error::timeout ? connect_status::tls_timeout : connect_status::tls_failed,
        hec.message(), false};
  }
  s.expires_never();
  co_return acquired{std::make_unique<connection>(id, std::move(s)), connect_status::ok, {}, false};
}

void connection_pool::discard(connection& c) {
  ++stats_.closed;
  if (c.keeps_buffers) --kept_;
  close_quietly(c);
}

// Oldest first: those past the idle timeout go, whichever loop they belong to.
void connection_pool::close_expired(slot& s, time_point now) {
  while (!s.idle.empty() && now - s.idle.front()->idle_since >= settings_.idle_timeout) {
    discard(*s.idle.front());
    s.idle.pop_front();
  }
}

void connection_pool::sweep(time_point now) {
  std::lock_guard lock(mu_);
  for (auto it = slots_.begin(); it != slots_.end();) {
    auto& s = it->second;
    close_expired(s, now);
    // The idle list is in order of idle_since: the rest are younger.
    for (auto& c : s.idle) {
      if (now - c->idle_since < settings_.buffer_linger) break;
      if (!c->keeps_buffers) continue;
      // No operation runs on an idle connection: the pool owns it, under the lock.
      c->stream().release_buffers();
      c->keeps_buffers = false;
      --kept_;
    }
    auto next = std::next(it);
    prune(it);
    it = next;
  }
}

void connection_pool::wake_one(slot& s) {
  if (s.waiters.empty()) return;
  s.waiters.front()->wake();  // on the waiter's loop
  s.waiters.pop_front();
}

// A slot with no connection and nobody waiting is dropped: origins are client-chosen under a
// wildcard intercept pattern, so the map may not keep one entry per name ever seen (issue 14).
void connection_pool::prune(std::map<origin, slot>::iterator it) {
  const slot& s = it->second;
  if (s.idle.empty() && s.active == 0 && s.waiters.empty()) slots_.erase(it);
}

void connection_pool::release(const origin& o, std::unique_ptr<connection> c, bool reusable) {
  std::lock_guard lock(mu_);
  auto it = slots_.try_emplace(o).first;
  auto& s = it->second;
  if (s.active > 0) --s.active;
  if (c) {
    if (reusable && !closed_) {
      c->idle_since = coarse_now();
      s.idle.push_back(std::move(c));
    } else {
      discard(*c);
    }
  }
  wake_one(s);
  prune(it);
}

void connection_pool::update_settings(settings s) {
  std::lock_guard lock(mu_);
  settings_ = std::move(s);
}

void connection_pool::close_all() {
  std::lock_guard lock(mu_);
  closed_ = true;
  for (auto& [key, s] : slots_) {
    for (auto& c : s.idle) discard(*c);
    s.idle.clear();
    while (!s.waiters.empty()) wake_one(s);
  }
}

pool_stats connection_pool::stats() const {
  std::lock_guard lock(mu_);
  pool_stats out = stats_;
  out.origins = slots_.size();
  for (const auto& [key, s] : slots_) {
    out.idle += s.idle.size();
    out.active += s.active;
    out.idle_keeping_buffers += static_cast<std::size_t>(
        std::count_if(s.idle.begin(), s.idle.end(), [](const auto& c) { return c->keeps_buffers; }));
  }
  return out;
}

}  // namespace okta_sidecar::upstream
