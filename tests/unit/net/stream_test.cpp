#include "okta_sidecar/net/stream.hpp"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <string>
#include <thread>
#include <vector>

#include "../tls/tls_test_support.hpp"

namespace okta_sidecar::net {
namespace {

namespace ssl_error = boost::asio::ssl::error;
using tls::testing::cert_spec;
using tls::testing::make_cert;
using tls::testing::make_key;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

using pki = tls::testing::localhost_pki;

// A connected loopback pair and an io_context to run coroutines on them.
struct loopback {
  asio::io_context ioc;
  std::unique_ptr<stream> server;
  std::unique_ptr<stream> client;

  loopback() {
    tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket c(ioc);
    c.connect(acceptor.local_endpoint());
    tcp::socket s = acceptor.accept();
    server = std::make_unique<stream>(std::move(s));
    client = std::make_unique<stream>(std::move(c));
  }

  void tls(pki& p, const char* verify_host = "localhost") {
    ASSERT_TRUE(server->start_tls(p.server.get(), stream::role::server));
    ASSERT_TRUE(client->start_tls(p.client.get(), stream::role::client));
    SSL_set1_host(client->native_handle(), verify_host);
    SSL_set_tlsext_host_name(client->native_handle(), verify_host);
  }

  template <class F>
  void spawn(F&& f) {
    asio::co_spawn(ioc, std::forward<F>(f), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
  }

  void run() { ioc.run_for(std::chrono::seconds(10)); }
};

asio::awaitable<error_code> handshake(stream& s) {
  auto [ec, n] = co_await s.async_handshake(use_tuple);
  co_return ec;
}

std::string pattern(std::size_t n) {
  std::string out(n, '\0');
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<char>('a' + (i * 7) % 26);
  return out;
}

TEST(StreamTest, TlsHandshakeBothWaysAndLargeTransfersBothWays) {
  pki p;
  loopback lb;
  lb.tls(p);
  const std::string up = pattern(200 * 1024);
  const std::string down = pattern(100 * 1024 + 3);
  error_code server_hs, client_hs;
  std::string server_got(up.size(), '\0');
  std::string client_got(down.size(), '\0');
  lb.spawn([&]() -> asio::awaitable<void> {
    server_hs = co_await handshake(*lb.server);
    auto [rec, rn] = co_await asio::async_read(*lb.server, asio::buffer(server_got), use_tuple);
    EXPECT_FALSE(rec) << rec.message();
    auto [wec, wn] = co_await asio::async_write(*lb.server, asio::buffer(down), use_tuple);
    EXPECT_FALSE(wec) << wec.message();
  });
  lb.spawn([&]() -> asio::awaitable<void> {
    client_hs = co_await handshake(*lb.client);
    auto [wec, wn] = co_await asio::async_write(*lb.client, asio::buffer(up), use_tuple);
    EXPECT_FALSE(wec) << wec.message();
    auto [rec, rn] = co_await asio::async_read(*lb.client, asio::buffer(client_got), use_tuple);
    EXPECT_FALSE(rec) << rec.message();
  });
  lb.run();
  EXPECT_FALSE(server_hs) << server_hs.message();
  EXPECT_FALSE(client_hs) << client_hs.message();
  EXPECT_EQ(SSL_get_verify_result(lb.client->native_handle()), X509_V_OK);
  EXPECT_TRUE(server_got == up);
  EXPECT_TRUE(client_got == down);
}

TEST(StreamTest, ClientRefusesCertificateForAnotherName) {
  pki p;
  loopback lb;
  lb.tls(p, "other.example");
  error_code client_hs;
  lb.spawn([&]() -> asio::awaitable<void> { co_await handshake(*lb.server); });
  lb.spawn([&]() -> asio::awaitable<void> { client_hs = co_await handshake(*lb.client); });
  lb.run();
  EXPECT_TRUE(client_hs);
  EXPECT_EQ(client_hs.category(), asio::error::get_ssl_category());
  EXPECT_EQ(SSL_get_verify_result(lb.client->native_handle()), X509_V_ERR_HOSTNAME_MISMATCH);
}

TEST(StreamTest, WriteSomeReturnsPartOfABufferTheSocketCannotTake) {
  pki p;
  loopback lb;
  lb.tls(p);
  const std::string big = pattern(4 * 1024 * 1024);
  std::string got(big.size(), '\0');
  std::size_t first_write = 0;
  lb.spawn([&]() -> asio::awaitable<void> { co_await handshake(*lb.server); });
  lb.spawn([&]() -> asio::awaitable<void> {
    co_await handshake(*lb.client);
    // The server reads nothing yet, so the socket buffers fill long before 4 MiB.
    auto [ec, n] = co_await lb.client->async_write_some(asio::buffer(big), use_tuple);
    EXPECT_FALSE(ec) << ec.message();
    first_write = n;
    lb.spawn([&]() -> asio::awaitable<void> {
      auto [rec, rn] = co_await asio::async_read(*lb.server, asio::buffer(got), use_tuple);
      EXPECT_FALSE(rec) << rec.message();
    });
    auto [wec, wn] =
        co_await asio::async_write(*lb.client, asio::buffer(big.data() + n, big.size() - n), use_tuple);
    EXPECT_FALSE(wec) << wec.message();
  });
  lb.run();
  EXPECT_GT(first_write, 0u);
  EXPECT_LT(first_write, big.size());
  EXPECT_TRUE(got == big);
}

// A peer that closes without close_notify may have cut the message short (RFC 8446 §6.1): the
// reader must see stream_truncated, never a clean end of stream.
// The receiving side of the close tests: the handshake, then one read whose error is kept.
asio::awaitable<void> handshake_and_read_once(stream& s, error_code& out) {
  co_await handshake(s);
  char buf[64];
  auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), use_tuple);
  out = ec;
}

TEST(StreamTest, PeerClosingMidRecordIsTruncated) {
  pki p;
  loopback lb;
  lb.tls(p);
  error_code read_ec;
  lb.spawn([&]() -> asio::awaitable<void> {
    co_await handshake(*lb.client);
    // Half a record header, then the socket goes away under the SSL.
    const unsigned char partial[] = {0x17, 0x03, 0x03};
    error_code ignored;
    asio::write(lb.client->socket(), asio::buffer(partial), ignored);
    lb.client->close();
  });
  lb.spawn([&]() { return handshake_and_read_once(*lb.server, read_ec); });
  lb.run();
  EXPECT_EQ(read_ec, ssl_error::stream_truncated) << read_ec.message();
}

TEST(StreamTest, PeerClosingWithoutCloseNotifyIsTruncated) {
  pki p;
  loopback lb;
  lb.tls(p);
  error_code read_ec;
  lb.spawn([&]() -> asio::awaitable<void> {
    co_await handshake(*lb.client);
    lb.client->close();
  });
  lb.spawn([&]() { return handshake_and_read_once(*lb.server, read_ec); });
  lb.run();
  EXPECT_EQ(read_ec, ssl_error::stream_truncated) << read_ec.message();
}

TEST(StreamTest, CloseNotifyIsEndOfStreamAndBothShutdownsComplete) {
  pki p;
  loopback lb;
  lb.tls(p);
  error_code read_ec, server_shutdown = asio::error::fault, client_shutdown = asio::error::fault;
  lb.spawn([&]() -> asio::awaitable<void> {
    co_await handshake(*lb.client);
    lb.client->expires_after(std::chrono::seconds(5));
    auto [ec, n] = co_await lb.client->async_shutdown(use_tuple);
    client_shutdown = ec;
  });
  lb.spawn([&]() -> asio::awaitable<void> {
    co_await handshake(*lb.server);
    char buf[64];
    auto [ec, n] = co_await lb.server->async_read_some(asio::buffer(buf), use_tuple);
    read_ec = ec;
    auto [sec, sn] = co_await lb.server->async_shutdown(use_tuple);
    server_shutdown = sec;
  });
  lb.run();
  EXPECT_EQ(read_ec, asio::error::eof) << read_ec.message();
  EXPECT_FALSE(server_shutdown) << server_shutdown.message();
  EXPECT_FALSE(client_shutdown) << client_shutdown.message();
}

TEST(StreamTest, ReadPastItsDeadlineTimesOutAndClosesTheSocket) {
  pki p;
  loopback lb;
  lb.tls(p);
  error_code read_ec;
  lb.spawn([&]() -> asio::awaitable<void> { co_await handshake(*lb.client); });
  lb.spawn([&]() -> asio::awaitable<void> {
    co_await handshake(*lb.server);
    lb.server->expires_after(std::chrono::milliseconds(50));
    char buf[64];
    auto [ec, n] = co_await lb.server->async_read_some(asio::buffer(buf), use_tuple);
    read_ec = ec;
  });
  lb.run();
  EXPECT_EQ(read_ec, boost::beast::error::timeout) << read_ec.message();
  EXPECT_FALSE(lb.server->socket().is_open());
}

TEST(StreamTest, PlainStreamTimesOutToo) {
  loopback lb;
  error_code read_ec;
  lb.spawn([&]() -> asio::awaitable<void> {
    lb.server->expires_after(std::chrono::milliseconds(50));
    char buf[64];
    auto [ec, n] = co_await lb.server->async_read_some(asio::buffer(buf), use_tuple);
    read_ec = ec;
  });
  lb.run();
  EXPECT_EQ(read_ec, boost::beast::error::timeout) << read_ec.message();
}

// The session reads the first bytes of a CONNECT tunnel to tell TLS from plain HTTP; the
// handshake must start from them, not from the socket.
TEST(StreamTest, ServerHandshakeStartsFromBytesReadBeforeIt) {
  pki p;
  loopback lb;
  ASSERT_TRUE(lb.client->start_tls(p.client.get(), stream::role::client));
  SSL_set1_host(lb.client->native_handle(), "localhost");
  error_code server_hs, client_hs;
  std::string got;
  lb.spawn([&]() -> asio::awaitable<void> {
    client_hs = co_await handshake(*lb.client);
    // Named: GCC 12 destroys a temporary inside a co_await expression twice.
    const std::string hello = "hello";
    auto [wec, wn] = co_await asio::async_write(*lb.client, asio::buffer(hello), use_tuple);
    EXPECT_FALSE(wec);
  });
  lb.spawn([&]() -> asio::awaitable<void> {
    std::vector<char> first(7);  // part of the ClientHello only
    auto [ec, n] = co_await asio::async_read(*lb.server, asio::buffer(first), use_tuple);
    EXPECT_FALSE(ec);
    EXPECT_EQ(first[0], 0x16);
    EXPECT_TRUE(lb.server->start_tls(p.server.get(), stream::role::server, asio::buffer(first)));
    EXPECT_TRUE(lb.server->has_buffered_input());
    server_hs = co_await handshake(*lb.server);
    got.resize(5);
    auto [rec, rn] = co_await asio::async_read(*lb.server, asio::buffer(got), use_tuple);
    EXPECT_FALSE(rec);
  });
  lb.run();
  EXPECT_FALSE(server_hs) << server_hs.message();
  EXPECT_FALSE(client_hs) << client_hs.message();
  EXPECT_EQ(got, "hello");
}

TEST(StreamTest, PlainStreamCarriesLargeGatheredWritesAndEndsWithEof) {
  loopback lb;
  const std::string a = pattern(70 * 1024);
  const std::string b = pattern(5);
  std::string got(a.size() + b.size(), '\0');
  error_code eof_ec;
  lb.spawn([&]() -> asio::awaitable<void> {
    auto [hec, hn] = co_await lb.client->async_handshake(use_tuple);
    EXPECT_FALSE(hec);
    const std::array<asio::const_buffer, 2> bufs{asio::buffer(a), asio::buffer(b)};
    auto [wec, wn] = co_await asio::async_write(*lb.client, bufs, use_tuple);
    EXPECT_FALSE(wec);
    lb.client->socket().shutdown(tcp::socket::shutdown_send);
  });
  lb.spawn([&]() -> asio::awaitable<void> {
    auto [ec, n] = co_await asio::async_read(*lb.server, asio::buffer(got), use_tuple);
    EXPECT_FALSE(ec);
    char more;
    auto [eec, en] = co_await lb.server->async_read_some(asio::buffer(&more, 1), use_tuple);
    eof_ec = eec;
  });
  lb.run();
  EXPECT_TRUE(got == a + b);
  EXPECT_EQ(eof_ec, asio::error::eof);
}

// async_write_all: every byte of several buffers, in order, through writes the socket takes only
// in part (the reader starts late), over plain TCP and TLS; (no error, the total) at the end.
void write_all_through_partial_writes(bool use_tls) {
  pki p;
  loopback lb;
  if (use_tls) lb.tls(p);
  const std::string a = pattern(3 * 1024 * 1024 + 7), b = pattern(11), c = pattern(2 * 1024 * 1024),
                    d = "end";
  const std::string all = a + b + c + d;
  std::string got(all.size(), '\0');
  error_code wec;
  std::size_t written = 0;
  lb.spawn([&]() -> asio::awaitable<void> {
    co_await lb.client->async_handshake(use_tuple);
    const std::array<asio::const_buffer, 4> bufs{asio::buffer(a), asio::buffer(b), asio::buffer(c),
                                                 asio::buffer(d)};
    std::tie(wec, written) = co_await lb.client->async_write_all(bufs, use_tuple);
  });
  lb.spawn([&]() -> asio::awaitable<void> {
    co_await lb.server->async_handshake(use_tuple);
    asio::steady_timer late(lb.ioc, std::chrono::milliseconds(50));
    co_await late.async_wait(use_tuple);  // the writer has met a full socket by now
    auto [ec, n] = co_await asio::async_read(*lb.server, asio::buffer(got), use_tuple);
    EXPECT_FALSE(ec) << ec.message();
  });
  lb.run();
  EXPECT_FALSE(wec) << wec.message();
  EXPECT_EQ(written, all.size());
  EXPECT_TRUE(got == all);
}

TEST(StreamTest, WriteAllWritesEveryBufferThroughPartialWritesPlain) {
  write_all_through_partial_writes(false);
}
TEST(StreamTest, WriteAllWritesEveryBufferThroughPartialWritesTls) { write_all_through_partial_writes(true); }

// A peer that goes away mid-write: the error, and how many bytes went out before it (the relay
// tells "nothing was sent" from "part was sent" by that count).
TEST(StreamTest, WriteAllReportsTheBytesWrittenBeforeItFailed) {
  loopback lb;
  const std::string big = pattern(8 * 1024 * 1024);
  error_code wec;
  std::size_t written = 0;
  lb.spawn([&]() -> asio::awaitable<void> {
    std::tie(wec, written) = co_await lb.client->async_write_all(asio::buffer(big), use_tuple);
  });
  lb.spawn([&]() -> asio::awaitable<void> {
    asio::steady_timer late(lb.ioc, std::chrono::milliseconds(50));
    co_await late.async_wait(use_tuple);
    lb.server->close();  // unread bytes in its receive buffer: the writer gets a reset
  });
  lb.run();
  EXPECT_TRUE(wec);
  EXPECT_GT(written, 0u);
  EXPECT_LT(written, big.size());
}

// The same when the deadline ends the write while it waits for a peer that reads nothing.
TEST(StreamTest, WriteAllPastItsDeadlineReportsTheBytesWritten) {
  loopback lb;
  const std::string big = pattern(8 * 1024 * 1024);
  error_code wec;
  std::size_t written = 0;
  lb.spawn([&]() -> asio::awaitable<void> {
    lb.client->expires_after(std::chrono::milliseconds(100));
    std::tie(wec, written) = co_await lb.client->async_write_all(asio::buffer(big), use_tuple);
  });
  lb.run();
  EXPECT_EQ(wec, boost::beast::error::timeout) << wec.message();
  EXPECT_GT(written, 0u);
  EXPECT_LT(written, big.size());
}

// An operation whose first attempt completes (the socket took every byte, or held some) is
// posted with its result, never completed inline, and its handler runs where an operation's
// would: on the handler's own executor, or on the stream's when it has none (not on Asio's
// system executor, whose threads are not the io_context's).
TEST(StreamTest, OperationsThatCompleteAtOnceArePostedToTheHandlersExecutor) {
  loopback lb;
  const std::string msg = "GET / HTTP/1.1\r\n\r\n";
  const auto this_thread = std::this_thread::get_id();
  bool wrote = false, read = false, on_strand = false;
  std::thread::id write_thread, read_thread;
  std::string got(msg.size(), '\0');
  lb.client->async_write_all(asio::buffer(msg), [&](error_code ec, std::size_t n) {
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(n, msg.size());
    wrote = true;
    write_thread = std::this_thread::get_id();
  });
  EXPECT_FALSE(wrote) << "completed inline";
  lb.ioc.poll();
  ASSERT_TRUE(wrote);
  EXPECT_EQ(write_thread, this_thread);
  // Loopback has delivered the bytes: the read's first attempt takes them.
  auto strand = asio::make_strand(lb.ioc);
  lb.server->async_read_some(asio::buffer(got),
                             asio::bind_executor(strand, [&](error_code ec, std::size_t n) {
                               EXPECT_FALSE(ec) << ec.message();
                               EXPECT_EQ(n, msg.size());
                               read = true;
                               read_thread = std::this_thread::get_id();
                               on_strand = strand.running_in_this_thread();
                             }));
  EXPECT_FALSE(read) << "completed inline";
  lb.ioc.restart();  // the first poll ran out of work, which stops an io_context
  lb.ioc.poll();
  ASSERT_TRUE(read);
  EXPECT_EQ(read_thread, this_thread);
  EXPECT_TRUE(on_strand);
  EXPECT_EQ(got, msg);
}

TEST(StreamTest, WriteAllRefusesMoreBuffersThanItGathers) {
  loopback lb;
  const std::string piece = "x";
  std::vector<asio::const_buffer> bufs(detail::max_write_all + 1, asio::buffer(piece));
  EXPECT_THROW(lb.client->async_write_all(bufs, asio::detached), std::length_error);
}

// Small pieces (a chunk header, a head in fields) go out as one TLS record each time.
TEST(StreamTest, TlsGathersSmallBuffers) {
  pki p;
  loopback lb;
  lb.tls(p);
  const std::string h1 = "HTTP/1.1 200 OK\r\n", h2 = "A: b\r\n", h3 = "\r\n";
  std::string got(h1.size() + h2.size() + h3.size(), '\0');
  std::size_t first = 0;
  lb.spawn([&]() -> asio::awaitable<void> {
    co_await handshake(*lb.client);
    const std::array<asio::const_buffer, 3> bufs{asio::buffer(h1), asio::buffer(h2), asio::buffer(h3)};
    auto [wec, wn] = co_await lb.client->async_write_some(bufs, use_tuple);
    EXPECT_FALSE(wec);
    first = wn;
  });
  lb.spawn([&]() -> asio::awaitable<void> {
    co_await handshake(*lb.server);
    auto [ec, n] = co_await asio::async_read(*lb.server, asio::buffer(got), use_tuple);
    EXPECT_FALSE(ec);
  });
  lb.run();
  EXPECT_EQ(first, got.size());
  EXPECT_EQ(got, h1 + h2 + h3);
}

// An idle connection waits for its next request without a buffer; the wait must end for bytes
// on the socket and for bytes OpenSSL already holds (which leave the socket silent).
TEST(StreamTest, WaitReadableSeesSocketBytesAndBytesOpenSslHolds) {
  pki p;
  loopback lb;
  lb.tls(p);
  error_code first_wait = asio::error::fault, second_wait = asio::error::fault;
  std::string got;
  lb.spawn([&]() -> asio::awaitable<void> {
    co_await handshake(*lb.client);
    const std::string text = "abcdef";
    auto [wec, wn] = co_await asio::async_write(*lb.client, asio::buffer(text), use_tuple);
    EXPECT_FALSE(wec);
  });
  lb.spawn([&]() -> asio::awaitable<void> {
    co_await handshake(*lb.server);
    lb.server->expires_after(std::chrono::seconds(5));
    auto [ec, n] = co_await lb.server->async_wait_readable(use_tuple);
    first_wait = ec;
    char two[2];
    auto [rec, rn] = co_await asio::async_read(*lb.server, asio::buffer(two), use_tuple);
    EXPECT_FALSE(rec);
    got.append(two, rn);
    EXPECT_TRUE(lb.server->has_buffered_input());
    auto [ec2, n2] = co_await lb.server->async_wait_readable(use_tuple);
    second_wait = ec2;
  });
  lb.run();
  EXPECT_FALSE(first_wait) << first_wait.message();
  EXPECT_FALSE(second_wait) << second_wait.message();
  EXPECT_EQ(got, "ab");
}

// read_now takes what is there without waiting and says would_block when nothing is, on a
// plain stream and on a TLS one (where the bytes at hand are a record to decrypt), and reports
// the peer's close as async_read_some does.
TEST(StreamTest, ReadNowTakesWhatIsThereAndNeverWaits) {
  for (const bool use_tls : {false, true}) {
    SCOPED_TRACE(use_tls ? "tls" : "plain");
    pki p;
    loopback lb;
    if (use_tls) lb.tls(p);
    // The client writes only once the server has looked at an empty socket, and closes only
    // once the server has read.
    asio::steady_timer write_now(lb.ioc, asio::steady_timer::time_point::max());
    asio::steady_timer close_now(lb.ioc, asio::steady_timer::time_point::max());
    const std::string text = "GET / HTTP/1.1\r\n\r\n";
    error_code before = {}, after = asio::error::fault, at_close = {};
    std::size_t n_before = 1, n_close = 1;
    std::string got;
    lb.spawn([&]() -> asio::awaitable<void> {
      co_await handshake(*lb.client);
      co_await write_now.async_wait(use_tuple);
      auto [wec, wn] = co_await asio::async_write(*lb.client, asio::buffer(text), use_tuple);
      EXPECT_FALSE(wec);
      co_await close_now.async_wait(use_tuple);
      if (use_tls) {
        lb.client->expires_after(std::chrono::seconds(5));
        co_await lb.client->async_shutdown(use_tuple);
      } else {
        lb.client->socket().shutdown(tcp::socket::shutdown_send);
      }
    });
    lb.spawn([&]() -> asio::awaitable<void> {
      co_await handshake(*lb.server);
      char buf[64];
      n_before = lb.server->read_now(asio::buffer(buf), before);
      write_now.cancel();
      lb.server->expires_after(std::chrono::seconds(5));
      co_await lb.server->async_wait_readable(use_tuple);
      got.assign(buf, lb.server->read_now(asio::buffer(buf), after));
      close_now.cancel();
      co_await lb.server->async_wait_readable(use_tuple);
      n_close = lb.server->read_now(asio::buffer(buf), at_close);
      if (use_tls) co_await lb.server->async_shutdown(use_tuple);
    });
    lb.run();
    EXPECT_EQ(n_before, 0u);
    EXPECT_EQ(before, asio::error::would_block) << before.message();
    EXPECT_FALSE(after) << after.message();
    EXPECT_EQ(got, text);
    EXPECT_EQ(n_close, 0u);
    EXPECT_EQ(at_close, asio::error::eof) << at_close.message();
  }
}

// keep_buffers and release_buffers switch OpenSSL's record buffers between kept (a busy
// connection) and freed (a waiting one): bytes already decrypted but not yet read survive a
// release, and the connection reads and writes on afterwards in both directions, whichever
// the mode (the buffers come back at the next I/O). On a plain stream both do nothing.
TEST(StreamTest, ReleasedBuffersLoseNothingAndComeBack) {
  for (const bool use_tls : {false, true}) {
    SCOPED_TRACE(use_tls ? "tls" : "plain");
    pki p;
    loopback lb;
    if (use_tls) lb.tls(p);
    const std::string request = "GET /one-record HTTP/1.1\r\n\r\n", reply = "HTTP/1.1 204 No Content\r\n\r\n";
    std::string got_request, got_reply, got_second;
    lb.spawn([&]() -> asio::awaitable<void> {
      co_await handshake(*lb.client);
      lb.client->release_buffers();  // before any record: nothing to free
      lb.client->keep_buffers();
      auto [wec, wn] = co_await asio::async_write(*lb.client, asio::buffer(request), use_tuple);
      EXPECT_FALSE(wec);
      lb.client->release_buffers();
      got_reply.resize(reply.size());
      lb.client->expires_after(std::chrono::seconds(5));
      auto [rec, rn] = co_await asio::async_read(*lb.client, asio::buffer(got_reply), use_tuple);
      EXPECT_FALSE(rec) << rec.message();
      lb.client->release_buffers();
      auto [w2, n2] = co_await asio::async_write(*lb.client, asio::buffer(request), use_tuple);
      EXPECT_FALSE(w2);
    });
    lb.spawn([&]() -> asio::awaitable<void> {
      co_await handshake(*lb.server);
      char part[5];
      lb.server->expires_after(std::chrono::seconds(5));
      auto [ec1, n1] = co_await asio::async_read(*lb.server, asio::buffer(part), use_tuple);
      EXPECT_FALSE(ec1) << ec1.message();
      got_request.assign(part, n1);
      lb.server->keep_buffers();
      // The rest of the record is decrypted and waiting inside the SSL (or on the socket).
      lb.server->release_buffers();
      std::string rest(request.size() - n1, '\0');
      auto [ec2, n2] = co_await asio::async_read(*lb.server, asio::buffer(rest), use_tuple);
      EXPECT_FALSE(ec2) << ec2.message();
      got_request += rest.substr(0, n2);
      lb.server->release_buffers();
      auto [wec, wn] = co_await asio::async_write(*lb.server, asio::buffer(reply), use_tuple);
      EXPECT_FALSE(wec);
      got_second.resize(request.size());
      auto [ec3, n3] = co_await asio::async_read(*lb.server, asio::buffer(got_second), use_tuple);
      EXPECT_FALSE(ec3) << ec3.message();
    });
    lb.run();
    EXPECT_EQ(got_request, request);
    EXPECT_EQ(got_reply, reply);
    EXPECT_EQ(got_second, request);
  }
}

TEST(StreamTest, WaitReadableTimesOut) {
  loopback lb;
  error_code wait_ec;
  lb.spawn([&]() -> asio::awaitable<void> {
    lb.server->expires_after(std::chrono::milliseconds(50));
    auto [ec, n] = co_await lb.server->async_wait_readable(use_tuple);
    wait_ec = ec;
  });
  lb.run();
  EXPECT_EQ(wait_ec, boost::beast::error::timeout) << wait_ec.message();
}

// A connection waiting for its next request lingers a moment, then is parked: that first wait
// ends by its soft deadline and leaves the connection usable.
TEST(StreamTest, SoftDeadlineEndsTheWaitButKeepsTheConnection) {
  pki p;
  loopback lb;
  lb.tls(p);
  error_code soft = asio::error::fault, passed = asio::error::fault, after = asio::error::fault;
  std::string got;
  lb.spawn([&]() -> asio::awaitable<void> {
    co_await handshake(*lb.server);
    lb.server->expires_softly_at(steady_clock::now() + std::chrono::milliseconds(30));
    auto [ec, n] = co_await lb.server->async_wait_readable(use_tuple);
    soft = ec;
    // One whose soft deadline has passed already fails at once, and closes nothing either.
    auto [ec2, n2] = co_await lb.server->async_wait_readable(use_tuple);
    passed = ec2;
    EXPECT_TRUE(lb.server->socket().is_open());
    // The client writes only now; a closing deadline again, and the bytes arrive.
    lb.spawn([&]() -> asio::awaitable<void> {
      const std::string text = "ping";
      auto [wec, wn] = co_await asio::async_write(*lb.client, asio::buffer(text), use_tuple);
      EXPECT_FALSE(wec);
    });
    lb.server->expires_after(std::chrono::seconds(5));
    char four[4];
    auto [rec, rn] = co_await asio::async_read(*lb.server, asio::buffer(four), use_tuple);
    after = rec;
    got.assign(four, rn);
  });
  lb.spawn([&]() -> asio::awaitable<void> { co_await handshake(*lb.client); });
  lb.run();
  EXPECT_EQ(soft, boost::beast::error::timeout) << soft.message();
  EXPECT_EQ(passed, boost::beast::error::timeout) << passed.message();
  EXPECT_FALSE(after) << after.message();
  EXPECT_EQ(got, "ping");
}

TEST(StreamTest, ReleasedTimersComeBackWithTheNextDeadline) {
  pki p;
  loopback lb;
  lb.tls(p);
  error_code during = asio::error::fault, expired = asio::error::fault;
  // Should a deadline be lost, the client's late byte ends the wait instead of the test hanging.
  asio::steady_timer fallback(lb.ioc, std::chrono::seconds(2));
  lb.spawn([&]() -> asio::awaitable<void> {
    co_await handshake(*lb.server);
    // Released while a wait is armed: nothing is released, and the deadline still ends it.
    lb.server->expires_softly_at(steady_clock::now() + std::chrono::milliseconds(30));
    asio::post(lb.ioc, [&] { lb.server->release_timers(); });
    auto [ec, n] = co_await lb.server->async_wait_readable(use_tuple);
    during = ec;
    // Released while idle: the next deadline makes the timers again, and it closes the socket.
    lb.server->release_timers();
    lb.server->expires_after(std::chrono::milliseconds(30));
    auto [ec2, n2] = co_await lb.server->async_wait_readable(use_tuple);
    expired = ec2;
    EXPECT_FALSE(lb.server->socket().is_open());
    fallback.cancel();
  });
  lb.spawn([&]() -> asio::awaitable<void> {
    co_await handshake(*lb.client);
    auto [tec] = co_await fallback.async_wait(use_tuple);
    if (tec) co_return;
    const std::string late = "x";
    co_await asio::async_write(*lb.client, asio::buffer(late), use_tuple);
  });
  lb.run();
  EXPECT_EQ(during, boost::beast::error::timeout) << during.message();
  EXPECT_EQ(expired, boost::beast::error::timeout) << expired.message();
}
}  // namespace
}  // namespace okta_sidecar::net
