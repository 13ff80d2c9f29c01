#include "okta_sidecar/admin/admin_server.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <okta_sidecar/embedded_dashboard_html.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace okta_sidecar::admin {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

using response = http::response<http::string_body>;

// A blocking-looking Beast client whose every operation is bounded: the coroutine runs on the
// client's own io_context for at most `limit`, so a server bug fails the test instead of
// hanging it.
class client {
 public:
  explicit client(std::uint16_t port) {
    stream_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }

  response request(http::verb method, std::string target, std::string body = {}, bool keep_alive = true) {
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.keep_alive(keep_alive);
    if (!body.empty() || method == http::verb::post) {
      req.body() = std::move(body);
      req.prepare_payload();
    }
    return run(exchange(std::move(req)));
  }

  void send_raw(std::string bytes) { run(write_raw(std::move(bytes))); }
  response read_response() { return run(read_one(false)); }

  // True once the server has closed the connection (EOF or reset), false if still open
  // after `limit`.
  bool closed_by_peer(std::chrono::milliseconds limit = 5000ms) {
    auto f = asio::co_spawn(ioc_, wait_for_close(), asio::use_future);
    ioc_.restart();
    ioc_.run_for(limit);
    if (f.wait_for(0s) != std::future_status::ready) {
      stream_.socket().cancel();
      ioc_.restart();
      ioc_.run_for(1s);
      return false;
    }
    return f.get();
  }

 private:
  template <class T>
  T run(asio::awaitable<T> op) {
    auto f = asio::co_spawn(ioc_, std::move(op), asio::use_future);
    ioc_.restart();
    ioc_.run_for(5s);
    if (f.wait_for(0s) != std::future_status::ready) throw std::runtime_error("client timed out");
    return f.get();
  }

  asio::awaitable<response> exchange(http::request<http::string_body> req) {
    co_await http::async_write(stream_, req, asio::use_awaitable);
    co_return co_await read_one(req.method() == http::verb::head);
  }

  asio::awaitable<response> read_one(bool head) {
    http::response_parser<http::string_body> p;
    p.skip(head);  // a response to HEAD has Content-Length but no body (RFC 9110 9.3.2)
    co_await http::async_read(stream_, buffer_, p, asio::use_awaitable);
    co_return p.release();
  }

  asio::awaitable<int> write_raw(std::string bytes) {
    co_await asio::async_write(stream_, asio::buffer(bytes), asio::use_awaitable);
    co_return 0;
  }

  asio::awaitable<bool> wait_for_close() {
    char byte;
    for (;;) {
      auto [ec, n] =
          co_await stream_.async_read_some(asio::buffer(&byte, 1), asio::as_tuple(asio::use_awaitable));
      if (ec) co_return true;
    }
  }

  asio::io_context ioc_;
  beast::tcp_stream stream_{ioc_};
  beast::flat_buffer buffer_;
};

class AdminServer : public ::testing::Test {
 protected:
  void start(admin_options opts = {}, int threads = 1) {
    handlers h;
    h.ready = [this] { return ready_.load(); };
    h.draining = [this] { return draining_.load(); };
    h.metrics = [] { return std::string("# TYPE x counter\nx 1\n"); };
    h.status_json = [] { return std::string(R"({"buckets":[],"breakers":[]})"); };
    h.ca_pem = [this] { return ca_loaded_ ? std::string("-----BEGIN CERTIFICATE-----\n") : ""; };
    start_with(std::move(h), opts, threads);
  }

  void start_with(handlers h, admin_options opts = {}, int threads = 1) {
    server_ = std::make_unique<admin_server>(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0),
                                             std::move(h), opts);
    server_->start();
    for (int i = 0; i < threads; ++i) runners_.emplace_back([this] { ioc_.run(); });
  }

  void TearDown() override {
    if (server_) server_->stop();
    work_.reset();
    ioc_.stop();
    for (auto& t : runners_) t.join();
    server_.reset();
  }

  std::uint16_t port() const { return server_->local_endpoint().port(); }

  asio::io_context ioc_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      asio::make_work_guard(ioc_)};
  std::vector<std::thread> runners_;
  std::unique_ptr<admin_server> server_;
  std::atomic<bool> ready_{true};
  std::atomic<bool> draining_{false};
  std::atomic<bool> ca_loaded_{true};
};

TEST_F(AdminServer, BindsLoopbackAndReportsTheChosenPort) {
  start();
  EXPECT_NE(port(), 0);
  EXPECT_EQ(server_->local_endpoint().address().to_string(), "127.0.0.1");
}

TEST_F(AdminServer, HealthzIsOkWithHardeningHeaders) {
  start();
  client c(port());
  const auto res = c.request(http::verb::get, "/healthz");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res.body(), "ok");
  EXPECT_EQ(res[http::field::cache_control], "no-store");
  EXPECT_EQ(res["X-Content-Type-Options"], "nosniff");
  EXPECT_EQ(res[http::field::content_type], "text/plain; charset=utf-8");
}

struct route_case {
  const char* target;
  http::status status;
  const char* content_type;
  const char* body;  // nullptr: not checked
};
class AdminServerRoutes : public AdminServer, public ::testing::WithParamInterface<route_case> {};
TEST_P(AdminServerRoutes, AnswersGet) {
  start();
  client c(port());
  const auto& p = GetParam();
  const auto res = c.request(http::verb::get, p.target);
  EXPECT_EQ(res.result(), p.status) << p.target;
  EXPECT_EQ(res[http::field::content_type], p.content_type) << p.target;
  if (p.body) {
    EXPECT_EQ(res.body(), p.body) << p.target;
  }
  EXPECT_EQ(res[http::field::cache_control], "no-store");
}
INSTANTIATE_TEST_SUITE_P(
    Table, AdminServerRoutes,
    ::testing::Values(
        route_case{"/healthz", http::status::ok, "text/plain; charset=utf-8", "ok"},
        route_case{"/healthz?probe=1", http::status::ok, "text/plain; charset=utf-8", "ok"},
        route_case{"/readyz", http::status::ok, "text/plain; charset=utf-8", "ready"},
        route_case{"/metrics", http::status::ok, "text/plain; version=0.0.4; charset=utf-8",
                   "# TYPE x counter\nx 1\n"},
        route_case{"/status", http::status::ok, "application/json", R"({"buckets":[],"breakers":[]})"},
        route_case{"/ca.crt", http::status::ok, "application/x-pem-file", "-----BEGIN CERTIFICATE-----\n"},
        route_case{"/", http::status::ok, "text/html; charset=utf-8", nullptr},
        route_case{"/nope", http::status::not_found, "text/plain; charset=utf-8", "not found"},
        route_case{"/healthz/", http::status::not_found, "text/plain; charset=utf-8", nullptr},
        route_case{"/METRICS", http::status::not_found, "text/plain; charset=utf-8", nullptr}));

TEST_F(AdminServer, ReadyzDistinguishesStartingFromDraining) {
  start();
  client c(port());
  ready_ = false;
  auto res = c.request(http::verb::get, "/readyz");
  EXPECT_EQ(res.result(), http::status::service_unavailable);
  EXPECT_EQ(res.body(), "starting");
  ready_ = true;
  draining_ = true;
  res = c.request(http::verb::get, "/readyz");
  EXPECT_EQ(res.result(), http::status::service_unavailable);
  EXPECT_EQ(res.body(), "draining");
  draining_ = false;
  res = c.request(http::verb::get, "/readyz");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res.body(), "ready");
  // Liveness stays up whatever readiness says.
  ready_ = false;
  EXPECT_EQ(c.request(http::verb::get, "/healthz").result(), http::status::ok);
}

TEST_F(AdminServer, DashboardIsTheEmbeddedPageWithAStrictContentSecurityPolicy) {
  start();
  client c(port());
  const auto res = c.request(http::verb::get, "/");
  EXPECT_EQ(res.body(), std::string(embedded_dashboard_html));
  const std::string csp(res["Content-Security-Policy"]);
  EXPECT_NE(csp.find("default-src 'none'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("connect-src 'self'"), std::string::npos) << csp;
}

TEST_F(AdminServer, MissingCaIsNotFound) {
  ca_loaded_ = false;
  start();
  client c(port());
  EXPECT_EQ(c.request(http::verb::get, "/ca.crt").result(), http::status::not_found);
}

TEST_F(AdminServer, UnsetHandlersMakeTheirRoutesNotFound) {
  start_with(handlers{});
  client c(port());
  for (const char* t : {"/readyz", "/metrics", "/status", "/ca.crt"}) {
    EXPECT_EQ(c.request(http::verb::get, t).result(), http::status::not_found) << t;
  }
  EXPECT_EQ(c.request(http::verb::get, "/healthz").result(), http::status::ok);
}

TEST_F(AdminServer, ThrowingHandlerIs500AndTheConnectionSurvives) {
  handlers h;
  h.status_json = []() -> std::string { throw std::runtime_error("boom"); };
  start_with(std::move(h));
  client c(port());
  EXPECT_EQ(c.request(http::verb::get, "/status").result(), http::status::internal_server_error);
  EXPECT_EQ(c.request(http::verb::get, "/healthz").result(), http::status::ok);
}

TEST_F(AdminServer, HeadHasTheGetLengthAndNoBody) {
  start();
  client c(port());
  const auto get = c.request(http::verb::get, "/metrics");
  const auto head = c.request(http::verb::head, "/metrics");
  EXPECT_EQ(head.result(), http::status::ok);
  EXPECT_EQ(head[http::field::content_length], std::to_string(get.body().size()));
  EXPECT_TRUE(head.body().empty());
  // The connection is still in sync: a body was not sent after the HEAD response.
  EXPECT_EQ(c.request(http::verb::get, "/healthz").body(), "ok");
}

TEST_F(AdminServer, OtherMethodsAre405WithAllow) {
  start();
  client c(port());
  for (auto m : {http::verb::post, http::verb::put, http::verb::delete_, http::verb::options}) {
    const auto res = c.request(m, "/healthz", m == http::verb::post ? "x" : "", true);
    EXPECT_EQ(res.result(), http::status::method_not_allowed) << http::to_string(m);
    EXPECT_EQ(res[http::field::allow], "GET, HEAD");
  }
}

TEST_F(AdminServer, KeepAliveServesManyRequestsOnOneConnection) {
  start();
  client c(port());
  for (int i = 0; i < 20; ++i) {
    const auto res = c.request(http::verb::get, "/healthz");
    ASSERT_EQ(res.result(), http::status::ok);
    EXPECT_TRUE(res.keep_alive());
  }
}

TEST_F(AdminServer, ConnectionCloseIsHonoured) {
  start();
  client c(port());
  const auto res = c.request(http::verb::get, "/healthz", {}, /*keep_alive=*/false);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(AdminServer, PipelinedRequestsAreAnsweredInOrder) {
  start();
  client c(port());
  c.send_raw(
      "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\nGET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_EQ(c.read_response().body(), "ok");
  EXPECT_EQ(c.read_response().body(), "ready");
}

TEST_F(AdminServer, OversizedHeaderIs431ThenClose) {
  admin_options o;
  o.max_header_bytes = 1024;
  start(o);
  client c(port());
  c.send_raw("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n");
  const auto res = c.read_response();
  EXPECT_EQ(res.result(), http::status::request_header_fields_too_large);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(AdminServer, HeaderJustUnderTheLimitIsServed) {
  admin_options o;
  o.max_header_bytes = 1024;
  start(o);
  client c(port());
  const std::string head = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: ";
  const std::size_t pad = 1024 - head.size() - 4;  // "\r\n\r\n" completes exactly 1024 bytes
  c.send_raw(head + std::string(pad, 'a') + "\r\n\r\n");
  EXPECT_EQ(c.read_response().result(), http::status::ok);
}

TEST_F(AdminServer, OversizedBodyIs413ThenClose) {
  admin_options o;
  o.max_body_bytes = 16;
  start(o);
  client c(port());
  c.send_raw("GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 17\r\n\r\n" + std::string(17, 'b'));
  EXPECT_EQ(c.read_response().result(), http::status::payload_too_large);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(AdminServer, GarbageIs400ThenClose) {
  start();
  client c(port());
  c.send_raw("NOT HTTP AT ALL\r\n\r\n");
  EXPECT_EQ(c.read_response().result(), http::status::bad_request);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(AdminServer, SlowHeaderIsCutOffByTheReadTimeout) {
  admin_options o;
  o.read_timeout = 200ms;
  start(o);
  client c(port());
  c.send_raw("GET /healthz HTTP/1.1\r\nHost: localhost\r\n");  // never finishes the head
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.closed_by_peer(5000ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 150ms);
}

TEST_F(AdminServer, StopClosesIdleKeepAliveConnectionsAndTheListener) {
  start();
  client c(port());
  ASSERT_EQ(c.request(http::verb::get, "/healthz").result(), http::status::ok);
  const auto p = port();
  server_->stop();
  EXPECT_TRUE(c.closed_by_peer());
  ASSERT_TRUE(server_->wait_listener_closed(5000ms));
  asio::io_context ioc;
  tcp::socket s(ioc);
  boost::system::error_code ec;
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), p), ec);
  EXPECT_EQ(ec, asio::error::connection_refused);
}

TEST_F(AdminServer, ConnectionsBeyondTheCapAreClosed) {
  admin_options o;
  o.max_connections = 1;
  start(o);
  client first(port());
  ASSERT_EQ(first.request(http::verb::get, "/healthz").result(), http::status::ok);
  client second(port());
  EXPECT_TRUE(second.closed_by_peer());
  EXPECT_EQ(first.request(http::verb::get, "/healthz").result(), http::status::ok);
}

TEST_F(AdminServer, BindFailureThrowsNamingTheAddress) {
  start();
  const auto p = port();
  try {
    admin_server clash(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), p), handlers{});
    FAIL() << "second bind on the same port succeeded";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(p)), std::string::npos) << e.what();
    EXPECT_EQ(e.code(), std::errc::address_in_use);
  }
}

TEST_F(AdminServer, StopIsIdempotentAndStartAfterStopDoesNothing) {
  start();
  server_->stop();
  server_->stop();
  server_->start();
  SUCCEED();
}

// Runs the server on a two-thread io_context with clients on four threads, so TSan sees the
// connection registry, the handlers and stop() racing (ctest label "threads").
TEST_F(AdminServer, ThreadsConcurrentClientsOnAMultiThreadedContext) {
  std::atomic<int> calls{0};
  handlers h;
  h.status_json = [&] {
    calls.fetch_add(1);
    return std::string("{}");
  };
  start_with(std::move(h), {}, 2);
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&] {
      client c(port());
      for (int i = 0; i < 25; ++i) {
        if (c.request(http::verb::get, "/status").result() == http::status::ok) ok.fetch_add(1);
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 100);
  EXPECT_EQ(calls.load(), 100);
  client idle(port());
  ASSERT_EQ(idle.request(http::verb::get, "/healthz").result(), http::status::ok);
  server_->stop();
  EXPECT_TRUE(idle.closed_by_peer());
}

}  // namespace
}  // namespace okta_sidecar::admin

namespace okta_sidecar::admin {
namespace {

TEST_F(AdminServer, RequestsNamingAnotherHostAreRefused) {
  // DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1.
  start();
  client c(port());
  c.send_raw("GET /status HTTP/1.1\r\nHost: evil.example:9901\r\n\r\n");
  const auto res = c.read_response();
  EXPECT_EQ(res.result(), http::status::forbidden);
  EXPECT_NE(res.body().find("Host"), std::string::npos);
  client ok(port());
  ok.send_raw("GET /status HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n");
  EXPECT_EQ(ok.read_response().result(), http::status::ok);
}

}  // namespace
}  // namespace okta_sidecar::admin
