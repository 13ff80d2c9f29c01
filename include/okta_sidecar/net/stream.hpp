#pragma once
// One connection type for both legs: plain TCP, or TLS run the way nginx runs it, with the SSL
// reading and writing the non-blocking socket itself. Asio's ssl::stream keeps two 17 KiB
// buffers and a 2x17 KiB BIO pair for a connection's whole life; here OpenSSL holds record
// buffers only while a record is in flight (SSL_MODE_RELEASE_BUFFERS), or, once the connection
// is busy, until it next waits (keep_buffers, release_buffers). So an idle kept-alive TLS
// connection costs little more than the SSL object itself.
#include <array>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <memory>
#include <span>
#include <stdexcept>
#include <type_traits>

#include "okta_sidecar/clock.hpp"

struct ssl_st;      // SSL
struct ssl_ctx_st;  // SSL_CTX

namespace okta_sidecar::net {

namespace asio = boost::asio;
using error_code = boost::system::error_code;
using tcp = asio::ip::tcp;

namespace detail {

enum class direction { read, write };

// What one non-blocking attempt did: finished (with `ec` and `n`), or must wait for the socket.
struct attempt {
  enum class next { done, wait_read, wait_write } what = next::done;
  error_code ec;
  std::size_t n = 0;
};

// The state an operation and its timer share; it outlives the stream while either is pending.
class stream_state;

template <class Buffers>
asio::mutable_buffer first_buffer(const Buffers& b) {
  for (auto it = asio::buffer_sequence_begin(b); it != asio::buffer_sequence_end(b); ++it) {
    asio::mutable_buffer m(*it);
    if (m.size() > 0) return m;
  }
  return {};
}

// Up to this many non-empty buffers of a sequence go into one write (async_write_some), or
// into one async_write_all: the proxy's writes have at most four (head, chunk size, data, tail),
// and the operation is moved a few times, so it stays small.
constexpr std::size_t max_gather = 16;
constexpr std::size_t max_write_all = 4;
template <std::size_t N>
struct gathered {
  std::array<asio::const_buffer, N> bufs;
  std::size_t count = 0;
};

template <std::size_t N, class Buffers>
gathered<N> gather(const Buffers& b) {
  gathered<N> g;
  for (auto it = asio::buffer_sequence_begin(b); it != asio::buffer_sequence_end(b) && g.count < N; ++it) {
    asio::const_buffer c(*it);
    if (c.size() > 0) g.bufs[g.count++] = c;
  }
  return g;
}

// The part of an operation that is not a template: one attempt, the socket wait, the deadline.
struct op_core {
  std::shared_ptr<stream_state> st;
  direction dir;
  bool waited = false;

  attempt try_read(asio::mutable_buffer b);
  attempt try_write(asio::const_buffer b);
  attempt try_gathered_write(std::span<const asio::const_buffer> bufs);
  attempt try_readable();
  attempt try_handshake();
  attempt try_shutdown();
  // Arms the deadline (once per operation) with its handler on `ex`, the operation's own
  // executor: a pooled connection serves coroutines on other strands than the one it was opened
  // on. False when the deadline has already passed.
  bool arm(const asio::any_io_executor& ex);
  // After a wait: the error to report, timeout when the deadline closed the socket.
  error_code after_wait(error_code ec);
  void finish();
  tcp::socket& socket();
};

// Runs `attempt_fn` until it completes, waiting on the socket in between. stream::start makes
// the first attempt itself and an operation only for one that must wait: it begins with the
// wait `result` asks for.
template <class AttemptFn>
struct io_op {
  op_core core;
  AttemptFn attempt_fn;
  attempt result{};
  bool posted = false;  // the deadline had passed before the wait: `result` is the timeout

  template <class Self>
  void operator()(Self& self, error_code ec = {}) {
    if (posted) {
      core.finish();
      self.complete(result.ec, result.n);
      return;
    }
    if (core.waited) {  // after a wait (the first call has none): the next attempt
      ec = core.after_wait(ec);
      if (ec) {
        core.finish();
        self.complete(ec, progress());
        return;
      }
      result = attempt_fn(core);
      if (result.what == attempt::next::done) {
        core.finish();
        self.complete(result.ec, result.n);
        return;
      }
    }
    const asio::any_io_executor ex = asio::get_associated_executor(self, core.socket().get_executor());
    if (!core.arm(ex)) {
      result = attempt{attempt::next::done, make_timeout(), 0};
      posted = true;
      asio::post(std::move(self));
      return;
    }
    core.waited = true;
    core.socket().async_wait(
        result.what == attempt::next::wait_read ? tcp::socket::wait_read : tcp::socket::wait_write,
        std::move(self));
  }

  static error_code make_timeout();
  // The bytes an operation has moved before it failed (a write of all its bytes reports them).
  std::size_t progress() const {
    if constexpr (requires { attempt_fn.written; }) {
      return attempt_fn.written;
    } else {
      return 0;
    }
  }
};

struct read_attempt {
  asio::mutable_buffer b;
  attempt operator()(op_core& c) const { return c.try_read(b); }
};
struct write_attempt {
  gathered<max_gather> g;
  attempt operator()(op_core& c) const { return c.try_gathered_write({g.bufs.data(), g.count}); }
};
// Every byte of up to max_write_all buffers, in as many writes as the socket needs: one operation
// where asio::async_write would compose one per write_some.
struct write_all_attempt {
  gathered<max_write_all> g;
  std::size_t first = 0;    // the first buffer not written whole
  std::size_t written = 0;  // bytes written so far
  attempt operator()(op_core& c) {
    for (;;) {
      while (first < g.count && g.bufs[first].size() == 0) ++first;
      if (first == g.count) return {attempt::next::done, {}, written};
      attempt a = c.try_gathered_write({g.bufs.data() + first, g.count - first});
      if (a.what != attempt::next::done) return a;
      if (a.ec) return {attempt::next::done, a.ec, written};
      written += a.n;
      for (std::size_t left = a.n; left > 0; ++first) {
        const std::size_t k = std::min(left, g.bufs[first].size());
        g.bufs[first] += k;
        left -= k;
        if (g.bufs[first].size() > 0) break;
      }
    }
  }
};
struct readable_attempt {
  attempt operator()(op_core& c) const { return c.try_readable(); }
};
struct handshake_attempt {
  attempt operator()(op_core& c) const { return c.try_handshake(); }
};
struct shutdown_attempt {
  attempt operator()(op_core& c) const { return c.try_shutdown(); }
};

error_code timeout_error();
template <class AttemptFn>
error_code io_op<AttemptFn>::make_timeout() {
  return timeout_error();
}

}  // namespace detail

// A TCP connection, plain or TLS after start_tls(). Models Asio's AsyncReadStream and
// AsyncWriteStream so Beast reads and writes it; deadlines behave like beast::tcp_stream's: an
// operation still waiting when the deadline passes closes the socket and fails with
// beast::error::timeout. A TLS peer that closes without close_notify is
// asio::ssl::error::stream_truncated, a close_notify is asio::error::eof.
class stream {
 public:
  using executor_type = asio::any_io_executor;
  enum class role { client, server };

  explicit stream(tcp::socket socket);
  stream(stream&&) noexcept;
  stream& operator=(stream&&) noexcept;
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;
  ~stream();

  executor_type get_executor() noexcept;
  tcp::socket& socket();
  const tcp::socket& socket() const;
  // Closes the socket; an SSL left attached reads and writes nothing after this.
  void close();

  // `d` counts from the first wait after this call (an operation that completes without waiting
  // reads no clock); expires_at is an absolute deadline.
  void expires_after(duration d);
  void expires_at(time_point t);
  void expires_never();
  // A deadline that fails the operation still waiting at `t` with beast::error::timeout but
  // leaves the connection open (for a wait that may simply end early). The next expires_*
  // call makes deadlines closing again.
  void expires_softly_at(time_point t);
  // Frees the deadline timers while no operation waits on one (a connection idle between
  // requests); the next operation with a deadline makes them again.
  void release_timers();
  // OpenSSL's record buffers (about 17 KiB each way). A new TLS stream frees them after every
  // record. keep_buffers: the connection is busy (a request follows another without a wait), so
  // they stay between records; freeing and allocating both per request cost about 4 % of an
  // intercepted request's CPU. release_buffers: the connection waits (parked, queued, backing
  // off), so they go now, and after every record again until the next keep_buffers. Buffers
  // holding unread or unsent bytes stay; the next read or write allocates what it needs.
  void keep_buffers();
  void release_buffers();

  // Makes the stream TLS before its handshake. `pre_read`: bytes of the peer's first flight that
  // were read from the socket already (they are fed to OpenSSL before the socket). False when
  // OpenSSL cannot make the SSL.
  bool start_tls(ssl_ctx_st* ctx, role r, asio::const_buffer pre_read = {});
  bool is_tls() const;
  ssl_st* native_handle();  // null while plain

  // Decrypted or fed bytes that no read has taken yet (the socket may have more).
  bool has_buffered_input() const;
  // Something unread: buffered, on the socket, or the peer's close.
  bool has_unread_input() const;

  // One read that does not wait: the bytes at hand now, or asio::error::would_block when there
  // are none yet (then async_read_some waits for them). For a caller that expects the bytes to
  // be there already, such as a busy client's next request: one recv instead of an operation.
  std::size_t read_now(asio::mutable_buffer b, error_code& ec);

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return start<detail::read_attempt>(detail::direction::read,
                                       detail::read_attempt{detail::first_buffer(buffers)},
                                       std::forward<Token>(token));
  }

  // async_read_some for a caller whose read_now has just found nothing: it waits for the socket
  // before its first read, which would find nothing too (one recv fewer per wait). A TLS record
  // that has come only in part waits for its rest on the socket, within the deadline.
  template <class MutableBuffers, class Token>
  auto async_read_some_after_empty(const MutableBuffers& buffers, Token&& token) {
    return start<detail::read_attempt>(detail::direction::read,
                                       detail::read_attempt{detail::first_buffer(buffers)},
                                       std::forward<Token>(token), true);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return start<detail::write_attempt>(detail::direction::write,
                                        detail::write_attempt{detail::gather<detail::max_gather>(buffers)},
                                        std::forward<Token>(token));
  }

  // Writes every byte of `buffers` (at most detail::max_write_all non-empty ones: more is a
  // programming error, std::length_error), as asio::async_write does: (error_code, bytes written).
  template <class ConstBuffers, class Token>
  auto async_write_all(const ConstBuffers& buffers, Token&& token) {
    detail::write_all_attempt w{detail::gather<detail::max_write_all>(buffers)};
    if (asio::buffer_size(buffers) != asio::buffer_size(std::span(w.g.bufs.data(), w.g.count))) {
      throw std::length_error("net::stream::async_write_all: too many buffers");
    }
    return start<detail::write_all_attempt>(detail::direction::write, std::move(w),
                                            std::forward<Token>(token));
  }

  // Completes with (error_code, 0) once a read would find something: bytes OpenSSL or the
  // pre-read holds, or a readable (or closed) socket. An idle connection waits this way without
  // holding a read buffer.
  template <class Token>
  auto async_wait_readable(Token&& token) {
    return start<detail::readable_attempt>(detail::direction::read, detail::readable_attempt{},
                                           std::forward<Token>(token));
  }

  // Completes with (error_code, bytes): the bytes count is 0 (pre-read bytes are all taken by
  // start_tls). A plain stream completes at once.
  template <class Token>
  auto async_handshake(Token&& token) {
    return start<detail::handshake_attempt>(detail::direction::read, detail::handshake_attempt{},
                                            std::forward<Token>(token));
  }

  // Sends close_notify and waits (within the deadline) for the peer's; (error_code, 0).
  template <class Token>
  auto async_shutdown(Token&& token) {
    return start<detail::shutdown_attempt>(detail::direction::read, detail::shutdown_attempt{},
                                           std::forward<Token>(token));
  }

 private:
  // The first attempt is made here, at initiation. One that completes (most reads of a busy
  // connection, nearly every write) posts its handler with the result: never inline, as Asio
  // requires (Beast's loops would otherwise recurse on bytes OpenSSL already holds), but
  // without the composed operation (its work guards and executor copies cost more than the
  // attempt itself). `wait_first`: the caller has just found nothing to read; the operation
  // waits before its first attempt.
  template <class AttemptFn, class Token>
  auto start(detail::direction d, AttemptFn fn, Token&& token, bool wait_first = false) {
    detail::op_core core{st_, d};
    detail::attempt first{detail::attempt::next::wait_read, {}, 0};
    if (!wait_first) first = fn(core);
    if (first.what == detail::attempt::next::done) {
      return asio::async_initiate<Token, void(error_code, std::size_t)>(
          [this](auto handler, error_code ec, std::size_t n) {
            // Straight to the handler's own executor (a coroutine's), which a post with an
            // executor argument would reach through a work guard and another executor copy; a
            // handler without one runs on the stream's, as an operation's would.
            if constexpr (std::is_same_v<asio::associated_executor_t<decltype(handler)>,
                                         asio::system_executor>) {
              asio::post(asio::bind_executor(get_executor(), asio::append(std::move(handler), ec, n)));
            } else {
              asio::post(asio::append(std::move(handler), ec, n));
            }
          },
          token, first.ec, first.n);
    }
    detail::io_op<AttemptFn> op{std::move(core), std::move(fn), first};
    return asio::async_compose<Token, void(error_code, std::size_t)>(std::move(op), token, get_executor());
  }

  std::shared_ptr<detail::stream_state> st_;
};

}  // namespace okta_sidecar::net
