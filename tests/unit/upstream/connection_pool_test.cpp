#include "okta_sidecar/upstream/connection_pool.hpp"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <string>
#include <vector>

#include "../tls/tls_test_support.hpp"

namespace okta_sidecar::upstream {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
using tcp = asio::ip::tcp;

// A TLS server for "localhost" on loopback that answers every read with "pong".
class pong_server {
 public:
  explicit pong_server(asio::io_context& ioc, SSL_CTX* ctx)
      : acceptor_(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)), ctx_(ctx) {
    asio::co_spawn(ioc, accept_loop(), asio::detached);
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  void stop() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, sock] = co_await acceptor_.async_accept(use_tuple);
      if (ec) co_return;
      asio::co_spawn(acceptor_.get_executor(), serve(net::stream(std::move(sock))), asio::detached);
    }
  }
  asio::awaitable<void> serve(net::stream s) {
    if (!s.start_tls(ctx_, net::stream::role::server)) co_return;
    auto [hec, hn] = co_await s.async_handshake(use_tuple);
    if (hec) co_return;
    char buf[64];
    for (;;) {
      auto [rec, rn] = co_await s.async_read_some(asio::buffer(buf), use_tuple);
      if (rec) co_return;
      auto [wec, wn] = co_await asio::async_write(s, asio::buffer("pong", 4), use_tuple);
      if (wec) co_return;
    }
  }

  tcp::acceptor acceptor_;
  SSL_CTX* ctx_;
};

struct pool_fixture : ::testing::Test {
  tls::testing::localhost_pki pki;
  asio::io_context ioc;
  pong_server server{ioc, pki.server.get()};
  asio::ssl::context client_ctx{asio::ssl::context::tls_client};
  origin where{true, "localhost", server.port()};
  std::unique_ptr<connection_pool> pool;

  void SetUp() override {
    X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx.native_handle()), pki.ca.get());
    client_ctx.set_verify_mode(asio::ssl::verify_peer);
    connection_pool::settings s;
    s.resolve["localhost:" + std::to_string(server.port())] = config::endpoint{"127.0.0.1", server.port()};
    s.idle_timeout = std::chrono::seconds(30);
    s.buffer_linger = std::chrono::seconds(1);
    pool = std::make_unique<connection_pool>(client_ctx, s);
  }

  // Runs `body` as a coroutine on the loop until it returns; fails the test on an exception.
  template <class F>
  void run(F body) {
    bool done = false;
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
          co_await body();
          done = true;
          server.stop();
          pool->close_all();
        },
        [](std::exception_ptr e) {
          if (e) std::rethrow_exception(e);
        });
    ioc.run_for(std::chrono::seconds(10));
    EXPECT_TRUE(done);
  }

  // One request on a pooled connection, then back to the pool.
  asio::awaitable<acquired> ping(bool expect_reused) {
    auto a = co_await pool->acquire(where, steady_clock::now() + std::chrono::seconds(5));
    EXPECT_EQ(a.status, connect_status::ok) << a.detail;
    EXPECT_EQ(a.reused, expect_reused);
    if (!a.conn) co_return a;
    auto& s = a.conn->stream();
    auto [wec, wn] = co_await asio::async_write(s, asio::buffer("ping", 4), use_tuple);
    EXPECT_FALSE(wec) << wec.message();
    char buf[4];
    auto [rec, rn] = co_await asio::async_read(s, asio::buffer(buf), use_tuple);
    EXPECT_FALSE(rec) << rec.message();
    EXPECT_EQ(std::string(buf, rn), "pong");
    co_return a;
  }
};

bool ssl_releases_buffers(connection& c) {
  return (SSL_get_mode(c.stream().native_handle()) & SSL_MODE_RELEASE_BUFFERS) != 0;
}

TEST_F(pool_fixture, ReusedTlsConnectionKeepsBuffersUntilIdleForTheLinger) {
  run([&]() -> asio::awaitable<void> {
    auto first = co_await ping(false);
    EXPECT_TRUE(first.conn);
    if (!(first.conn)) co_return;
    // A new connection frees its buffers after each record, as client connections do.
    EXPECT_TRUE(ssl_releases_buffers(*first.conn));
    EXPECT_FALSE(first.conn->keeps_buffers);
    pool->release(where, std::move(first.conn), true);
    EXPECT_EQ(pool->stats().idle_keeping_buffers, 0u);

    auto second = co_await ping(true);
    EXPECT_TRUE(second.conn);
    if (!(second.conn)) co_return;
    EXPECT_FALSE(ssl_releases_buffers(*second.conn));
    EXPECT_TRUE(second.conn->keeps_buffers);
    connection* raw = second.conn.get();
    pool->release(where, std::move(second.conn), true);
    EXPECT_EQ(pool->stats().idle_keeping_buffers, 1u);

    // Younger than the linger: kept. Older: freed, and per-record release is back.
    const auto now = steady_clock::now();
    pool->sweep(now);
    EXPECT_EQ(pool->stats().idle_keeping_buffers, 1u);
    pool->sweep(now + std::chrono::seconds(2));
    EXPECT_EQ(pool->stats().idle_keeping_buffers, 0u);
    EXPECT_TRUE(ssl_releases_buffers(*raw));
    EXPECT_EQ(pool->stats().idle, 1u);

    // The connection works after its buffers went, and keeps them again once reused.
    auto third = co_await ping(true);
    EXPECT_TRUE(third.conn);
    if (!(third.conn)) co_return;
    EXPECT_EQ(third.conn.get(), raw);
    EXPECT_FALSE(ssl_releases_buffers(*third.conn));
    pool->release(where, std::move(third.conn), true);
  });
}

TEST_F(pool_fixture, AtMostSixteenConnectionsKeepTheirBuffers) {
  run([&]() -> asio::awaitable<void> {
    constexpr int n = 17;
    std::vector<std::unique_ptr<connection>> held;
    for (int round = 0; round < 2; ++round) {
      for (int i = 0; i < n; ++i) {
        auto a = co_await ping(round == 1);
        EXPECT_TRUE(a.conn);
        if (!a.conn) co_return;
        held.push_back(std::move(a.conn));
      }
      int keeping = 0;
      for (auto& c : held) keeping += c->keeps_buffers ? 1 : 0;
      EXPECT_EQ(keeping, round == 0 ? 0 : 16);
      for (auto& c : held) pool->release(where, std::move(c), true);
      held.clear();
    }
    EXPECT_EQ(pool->stats().idle_keeping_buffers, 16u);
    // Freed by the sweep, the budget is there for the next ones.
    pool->sweep(steady_clock::now() + std::chrono::seconds(2));
    EXPECT_EQ(pool->stats().idle_keeping_buffers, 0u);
    for (int i = 0; i < n; ++i) {
      auto a = co_await ping(true);
      EXPECT_TRUE(a.conn);
      if (!a.conn) co_return;
      held.push_back(std::move(a.conn));
    }
    for (auto& c : held) pool->release(where, std::move(c), true);
    EXPECT_EQ(pool->stats().idle_keeping_buffers, 16u);
  });
}

TEST_F(pool_fixture, SweepClosesConnectionsIdlePastTheTimeoutAndForgetsTheOrigin) {
  run([&]() -> asio::awaitable<void> {
    auto a = co_await ping(false);
    EXPECT_TRUE(a.conn);
    if (!(a.conn)) co_return;
    pool->release(where, std::move(a.conn), true);
    auto before = pool->stats();
    EXPECT_EQ(before.idle, 1u);
    EXPECT_EQ(before.origins, 1u);

    pool->sweep(steady_clock::now() + std::chrono::seconds(29));
    EXPECT_EQ(pool->stats().idle, 1u);
    pool->sweep(steady_clock::now() + std::chrono::seconds(31));
    auto after = pool->stats();
    EXPECT_EQ(after.idle, 0u);
    EXPECT_EQ(after.closed, before.closed + 1);
    EXPECT_EQ(after.origins, 0u);

    // The next request opens a new connection.
    auto b = co_await ping(false);
    EXPECT_TRUE(b.conn);
    if (!(b.conn)) co_return;
    pool->release(where, std::move(b.conn), true);
  });
}

// take_idle, acquire()'s case without a coroutine: a live idle connection of the caller's loop,
// else nothing (and the caller goes through acquire()).
TEST_F(pool_fixture, TakeIdleHandsOutOnlyALiveIdleConnectionOfTheCallersLoop) {
  asio::io_context other;
  run([&]() -> asio::awaitable<void> {
    const auto ex = co_await asio::this_coro::executor;
    EXPECT_FALSE(pool->take_idle(where, ex));  // nothing pooled yet
    auto a = co_await ping(false);
    EXPECT_TRUE(a.conn);
    if (!a.conn) co_return;
    connection* raw = a.conn.get();
    pool->release(where, std::move(a.conn), true);

    EXPECT_FALSE(pool->take_idle(where, other.get_executor()));  // another worker's loop
    EXPECT_EQ(pool->stats().idle, 1u);
    auto c = pool->take_idle(where, ex);
    EXPECT_EQ(c.get(), raw);
    if (!c) co_return;
    EXPECT_EQ(pool->stats().reused, 1u);
    EXPECT_TRUE(c->keeps_buffers);  // reused, as through acquire()
    pool->release(where, std::move(c), true);

    // A connection that died while idle is closed and not handed out.
    raw->stream().socket().close();
    EXPECT_FALSE(pool->take_idle(where, ex));
    const auto st = pool->stats();
    EXPECT_EQ(st.idle, 0u);
    EXPECT_EQ(st.reused, 1u);
    auto b = co_await ping(false);  // a new one opens
    EXPECT_TRUE(b.conn);
    if (b.conn) pool->release(where, std::move(b.conn), true);
  });
}

TEST_F(pool_fixture, PlainConnectionsHaveNoBuffersToKeep) {
  origin plain{false, "localhost", server.port()};
  run([&]() -> asio::awaitable<void> {
    for (int i = 0; i < 2; ++i) {
      auto a = co_await pool->acquire(plain, steady_clock::now() + std::chrono::seconds(5));
      EXPECT_TRUE(a.conn) << a.detail;
      if (!(a.conn)) co_return;
      EXPECT_FALSE(a.conn->keeps_buffers);
      pool->release(plain, std::move(a.conn), true);
    }
    EXPECT_EQ(pool->stats().idle_keeping_buffers, 0u);
    EXPECT_EQ(pool->stats().reused, 1u);
  });
}

}  // namespace
}  // namespace okta_sidecar::upstream
