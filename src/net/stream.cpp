#include "okta_sidecar/net/stream.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <cerrno>
#include <cstring>
#include <string>

#include "okta_sidecar/net/lazy_deadline.hpp"

namespace okta_sidecar::net {
namespace detail {

class stream_state {
 public:
  explicit stream_state(tcp::socket s) : sock(std::move(s)) {}
  ~stream_state() {
    if (ssl != nullptr) SSL_free(ssl);
  }
  stream_state(const stream_state&) = delete;
  stream_state& operator=(const stream_state&) = delete;

  // One per direction, so a read and a write may wait at once (a full-duplex relay).
  struct deadline_slot {
    std::uint64_t serial = 0;  // a timer handler of an earlier operation must not close the socket
    bool armed = false;
    bool expired = false;
  };
  deadline_slot& slot(direction d) { return d == direction::read ? read_slot : write_slot; }
  // The slots' timers: made when an operation first arms a deadline, dropped while the
  // connection is idle (stream::release_timers), 240 bytes an idle connection does not need.
  struct timer_pair {
    explicit timer_pair(const asio::any_io_executor& ex) : read(ex), write(ex) {}
    asio::steady_timer read;
    asio::steady_timer write;
  };
  asio::steady_timer& timer(direction d) {
    if (!timers) timers = std::make_unique<timer_pair>(sock.get_executor());
    return d == direction::read ? timers->read : timers->write;
  }

  tcp::socket sock;
  SSL* ssl = nullptr;
  // The peer's bytes read before the handshake; the BIO hands them out before the socket's.
  std::string pre_read;
  std::size_t pre_read_used = 0;
  int last_errno = 0;  // of the BIO's last failed recv/send, for SSL_ERROR_SYSCALL
  lazy_deadline deadline;
  bool soft_deadline = false;  // the deadline fails the operation but keeps the socket open
  deadline_slot read_slot;
  deadline_slot write_slot;
  std::unique_ptr<timer_pair> timers;
};

namespace {

int bio_read(BIO* b, char* out, int len) {
  auto* st = static_cast<stream_state*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (st->pre_read_used < st->pre_read.size()) {
    const std::size_t n = std::min(st->pre_read.size() - st->pre_read_used, static_cast<std::size_t>(len));
    std::memcpy(out, st->pre_read.data() + st->pre_read_used, n);
    st->pre_read_used += n;
    if (st->pre_read_used == st->pre_read.size()) {
      std::string().swap(st->pre_read);
      st->pre_read_used = 0;
    }
    return static_cast<int>(n);
  }
  const ssize_t n = ::recv(st->sock.native_handle(), out, static_cast<std::size_t>(len), 0);
  if (n >= 0) return static_cast<int>(n);
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    BIO_set_retry_read(b);
  } else {
    st->last_errno = errno;
  }
  return -1;
}

// send() with MSG_NOSIGNAL: OpenSSL's socket BIO uses write(), which raises SIGPIPE on a
// connection the peer has reset.
int bio_write(BIO* b, const char* in, int len) {
  auto* st = static_cast<stream_state*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  const ssize_t n = ::send(st->sock.native_handle(), in, static_cast<std::size_t>(len), MSG_NOSIGNAL);
  if (n >= 0) return static_cast<int>(n);
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    BIO_set_retry_write(b);
  } else {
    st->last_errno = errno;
  }
  return -1;
}

long bio_ctrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

// Immutable after its first use and shared by every stream, as OpenSSL's own methods are.
BIO_METHOD* socket_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "okta_sidecar socket");
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_ctrl(m, bio_ctrl);
    return m;
  }();
  return method;
}

// OpenSSL's verdict on a failed call, in the codes Asio's ssl::stream uses, which the session
// code compares against.
attempt classify(stream_state& s, int rc) {
  attempt a;
  switch (SSL_get_error(s.ssl, rc)) {
    case SSL_ERROR_WANT_READ:
      a.what = attempt::next::wait_read;
      return a;
    case SSL_ERROR_WANT_WRITE:
      a.what = attempt::next::wait_write;
      return a;
    case SSL_ERROR_ZERO_RETURN:
      a.ec = asio::error::eof;
      break;
    case SSL_ERROR_SYSCALL:
      a.ec = s.last_errno != 0 ? error_code(s.last_errno, boost::system::system_category())
                               : error_code(asio::ssl::error::stream_truncated);
      break;
    case SSL_ERROR_SSL: {
      const unsigned long e = ERR_peek_last_error();
      if (ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        a.ec = asio::ssl::error::stream_truncated;
      } else {
        a.ec = error_code(static_cast<int>(e), asio::error::get_ssl_category());
      }
      break;
    }
    default:
      a.ec = error_code(static_cast<int>(ERR_peek_last_error()), asio::error::get_ssl_category());
      break;
  }
  ERR_clear_error();
  return a;
}

void prepare_call(stream_state& s) {
  // SSL_get_error needs an empty error queue before the call. Clearing one that is already
  // empty (nearly always) walks all its slots; looking costs less.
  if (ERR_peek_error() != 0) ERR_clear_error();
  s.last_errno = 0;
}

attempt closed() { return attempt{attempt::next::done, asio::error::bad_descriptor, 0}; }

// Beast's serializers hand over a head or chunk framing as several small buffers; one record
// (and one syscall) for the lot beats one per piece. The scratch copy is redone identically on a
// retry, which SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows.
constexpr std::size_t gather_limit = 16 * 1024;
constexpr std::size_t gather_small = 2 * 1024;

// One read that does not wait: what an operation tries before it waits, and all read_now does.
attempt read_once(stream_state& s, asio::mutable_buffer b) {
  if (!s.sock.is_open()) return closed();
  if (b.size() == 0) return {};
  if (s.ssl == nullptr) {
    attempt a;
    a.n = s.sock.read_some(b, a.ec);
    if (a.ec == asio::error::would_block || a.ec == asio::error::try_again)
      a = {attempt::next::wait_read, {}, 0};
    return a;
  }
  prepare_call(s);
  std::size_t n = 0;
  const int rc = SSL_read_ex(s.ssl, b.data(), b.size(), &n);
  if (rc == 1) return {attempt::next::done, {}, n};
  return classify(s, rc);
}

}  // namespace

error_code timeout_error() { return boost::beast::error::timeout; }

tcp::socket& op_core::socket() { return st->sock; }

attempt op_core::try_read(asio::mutable_buffer b) { return read_once(*st, b); }

attempt op_core::try_write(asio::const_buffer b) {
  stream_state& s = *st;
  if (!s.sock.is_open()) return closed();
  if (b.size() == 0) return {};
  if (s.ssl == nullptr) {
    attempt a;
    a.n = s.sock.write_some(b, a.ec);
    if (a.ec == asio::error::would_block || a.ec == asio::error::try_again)
      a = {attempt::next::wait_write, {}, 0};
    return a;
  }
  prepare_call(s);
  std::size_t n = 0;
  const int rc = SSL_write_ex(s.ssl, b.data(), b.size(), &n);
  if (rc == 1) return {attempt::next::done, {}, n};
  return classify(s, rc);
}

attempt op_core::try_gathered_write(std::span<const asio::const_buffer> bufs) {
  stream_state& s = *st;
  if (bufs.empty()) return {};
  if (s.ssl == nullptr) {
    if (!s.sock.is_open()) return closed();
    attempt a;
    a.n = s.sock.write_some(bufs, a.ec);
    if (a.ec == asio::error::would_block || a.ec == asio::error::try_again)
      a = {attempt::next::wait_write, {}, 0};
    return a;
  }
  if (bufs.size() == 1 || bufs[0].size() >= gather_small) return try_write(bufs[0]);
  thread_local std::array<char, gather_limit> scratch;
  std::size_t used = 0;
  for (const auto& b : bufs) {
    const std::size_t n = std::min(b.size(), scratch.size() - used);
    std::memcpy(scratch.data() + used, b.data(), n);
    used += n;
    if (used == scratch.size()) break;
  }
  return try_write(asio::const_buffer(scratch.data(), used));
}

attempt op_core::try_readable() {
  const stream_state& s = *st;
  if (waited || !s.sock.is_open()) return {};
  const bool buffered =
      s.pre_read_used < s.pre_read.size() || (s.ssl != nullptr && SSL_has_pending(s.ssl) == 1);
  if (buffered) return {};
  return {attempt::next::wait_read, {}, 0};
}

attempt op_core::try_handshake() {
  stream_state& s = *st;
  if (s.ssl == nullptr) return {};
  if (!s.sock.is_open()) return closed();
  prepare_call(s);
  const int rc = SSL_do_handshake(s.ssl);
  if (rc == 1) return {};
  return classify(s, rc);
}

attempt op_core::try_shutdown() {
  stream_state& s = *st;
  if (s.ssl == nullptr) return {};
  if (!s.sock.is_open()) return closed();
  prepare_call(s);
  int rc = SSL_shutdown(s.ssl);
  // 0: our close_notify is out; once more to read the peer's (RFC 8446 §6.1).
  if (rc == 0) rc = SSL_shutdown(s.ssl);
  if (rc == 1) return {};
  return classify(s, rc);
}

bool op_core::arm(const asio::any_io_executor& ex) {
  stream_state& s = *st;
  auto& slot = s.slot(dir);
  if (slot.armed || s.deadline.none()) return true;
  slot.expired = false;
  const auto now = steady_clock::now();
  const time_point deadline = s.deadline.arm(now);
  if (deadline <= now) {
    if (!s.soft_deadline) {
      error_code ignored;
      s.sock.close(ignored);
    }
    return false;
  }
  slot.armed = true;
  const auto serial = ++slot.serial;
  auto& timer = s.timer(dir);
  timer.expires_at(deadline);
  timer.async_wait(asio::bind_executor(ex, [st = st, d = dir, serial](error_code ec) {
    auto& sl = st->slot(d);
    if (ec || sl.serial != serial || !sl.armed) return;
    sl.expired = true;
    // As beast::tcp_stream does: the connection is unusable after a timeout, unless the
    // deadline was a soft one, which only ends the wait.
    error_code ignored;
    if (st->soft_deadline) {
      st->sock.cancel(ignored);
    } else {
      st->sock.close(ignored);
    }
  }));
  return true;
}

error_code op_core::after_wait(error_code ec) {
  if (st->slot(dir).expired) return timeout_error();
  return ec;
}

void op_core::finish() {
  auto& slot = st->slot(dir);
  if (!slot.armed) return;
  slot.armed = false;
  ++slot.serial;
  st->timer(dir).cancel();
}

}  // namespace detail

stream::stream(tcp::socket socket) : st_(std::make_shared<detail::stream_state>(std::move(socket))) {
  error_code ignored;
  // The attempts read and write the socket directly and wait only when it would block.
  st_->sock.non_blocking(true, ignored);
}

stream::stream(stream&&) noexcept = default;
stream& stream::operator=(stream&&) noexcept = default;

stream::~stream() {
  if (st_) close();
}

stream::executor_type stream::get_executor() noexcept { return st_->sock.get_executor(); }
tcp::socket& stream::socket() { return st_->sock; }
const tcp::socket& stream::socket() const { return st_->sock; }

void stream::close() {
  error_code ignored;
  if (st_->timers) {
    st_->timers->read.cancel();
    st_->timers->write.cancel();
  }
  st_->sock.close(ignored);
}

void stream::release_timers() {
  if (!st_->read_slot.armed && !st_->write_slot.armed) st_->timers.reset();
}

void stream::keep_buffers() {
  if (st_->ssl != nullptr) SSL_clear_mode(st_->ssl, SSL_MODE_RELEASE_BUFFERS);
}

void stream::release_buffers() {
  if (st_->ssl == nullptr) return;
  SSL_set_mode(st_->ssl, SSL_MODE_RELEASE_BUFFERS);
  SSL_free_buffers(st_->ssl);  // 0 (kept) while bytes are pending
}

void stream::expires_after(duration d) {
  st_->deadline.after(d);
  st_->soft_deadline = false;
}
void stream::expires_at(time_point t) {
  st_->deadline.at(t);
  st_->soft_deadline = false;
}
void stream::expires_never() { expires_at(time_point::max()); }
void stream::expires_softly_at(time_point t) {
  expires_at(t);
  st_->soft_deadline = true;
}

bool stream::start_tls(ssl_ctx_st* ctx, role r, asio::const_buffer pre_read) {
  if (st_->ssl != nullptr) return false;
  SSL* ssl = SSL_new(ctx);
  BIO* bio = ssl != nullptr ? BIO_new(detail::socket_method()) : nullptr;
  if (bio == nullptr) {
    SSL_free(ssl);
    ERR_clear_error();
    return false;
  }
  BIO_set_data(bio, st_.get());
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl, bio, bio);
  SSL_set_mode(
      ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // One recv per buffer-full instead of two per record (header, then body). What is read ahead
  // counts as buffered input (SSL_has_pending), and the buffer still goes when it is empty.
  SSL_set_read_ahead(ssl, 1);
  if (r == role::server) {
    SSL_set_accept_state(ssl);
  } else {
    SSL_set_connect_state(ssl);
  }
  st_->pre_read.assign(static_cast<const char*>(pre_read.data()), pre_read.size());
  st_->pre_read_used = 0;
  st_->ssl = ssl;
  return true;
}

std::size_t stream::read_now(asio::mutable_buffer b, error_code& ec) {
  const detail::attempt a = detail::read_once(*st_, b);
  ec = a.what == detail::attempt::next::done ? a.ec : error_code(asio::error::would_block);
  return a.n;
}

bool stream::is_tls() const { return st_->ssl != nullptr; }
ssl_st* stream::native_handle() { return st_->ssl; }

bool stream::has_buffered_input() const {
  return st_->pre_read_used < st_->pre_read.size() || (st_->ssl != nullptr && SSL_has_pending(st_->ssl) == 1);
}

bool stream::has_unread_input() const {
  if (has_buffered_input()) return true;
  if (!st_->sock.is_open()) return true;
  char byte;
  const ssize_t n = ::recv(st_->sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

}  // namespace okta_sidecar::net
