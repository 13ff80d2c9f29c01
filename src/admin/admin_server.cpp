#include "okta_sidecar/admin/admin_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <condition_variable>
#include <mutex>
#include <okta_sidecar/embedded_dashboard_html.hpp>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>

namespace okta_sidecar::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

namespace {

constexpr auto use_tuple = asio::as_tuple(use_awaitable);

// A pause after a failed accept (EMFILE, ENFILE...) so a full descriptor table does not turn
// the accept loop into a busy spin.
constexpr std::chrono::milliseconds accept_error_backoff{100};

// The dashboard is inline JS/CSS by design: this policy makes the browser enforce "nothing
// external", and lets the page talk only to this origin.
constexpr std::string_view dashboard_csp =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'";

std::string describe(const tcp::endpoint& ep) {
  const auto addr = ep.address();
  return (addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string()) + ":" + std::to_string(ep.port());
}

struct reply {
  http::status status = http::status::ok;
  std::string_view content_type = "text/plain; charset=utf-8";
  std::string body;
  bool allow_header = false;
  bool html = false;
};

reply text(http::status s, std::string body) {
  return reply{s, "text/plain; charset=utf-8", std::move(body)};
}

// The routing table: pure apart from the handler calls. GET and HEAD only, everywhere.
reply route(const handlers& h, http::verb method, std::string_view target) {
  if (method != http::verb::get && method != http::verb::head) {
    reply r = text(http::status::method_not_allowed, "method not allowed");
    r.allow_header = true;
    return r;
  }
  const std::string_view path = target.substr(0, target.find('?'));
  try {
    if (path == "/healthz") return text(http::status::ok, "ok");
    if (path == "/readyz" && h.ready) {
      if (h.draining && h.draining()) return text(http::status::service_unavailable, "draining");
      if (!h.ready()) return text(http::status::service_unavailable, "starting");
      return text(http::status::ok, "ready");
    }
    if (path == "/metrics" && h.metrics) {
      return reply{http::status::ok, "text/plain; version=0.0.4; charset=utf-8", h.metrics()};
    }
    if (path == "/status" && h.status_json) {
      return reply{http::status::ok, "application/json", h.status_json()};
    }
    if (path == "/status/history" && h.history_json) {
      return reply{http::status::ok, "application/json", h.history_json()};
    }
    if (path == "/config" && h.config_json) {
      return reply{http::status::ok, "application/json", h.config_json()};
    }
    if (path == "/ca-bundle.pem" && h.ca_bundle_pem) {
      std::string pem = h.ca_bundle_pem();
      if (pem.empty()) return text(http::status::not_found, "no CA bundle");
      return reply{http::status::ok, "application/x-pem-file", std::move(pem)};
    }
    if (path == "/ca.crt" && h.ca_pem) {
      std::string pem = h.ca_pem();
      if (pem.empty()) return text(http::status::not_found, "no CA certificate loaded");
      return reply{http::status::ok, "application/x-pem-file", std::move(pem)};
    }
    if (path == "/" || path == "/index.html") {
      reply r{http::status::ok, "text/html; charset=utf-8", std::string(embedded_dashboard_html)};
      r.html = true;
      return r;
    }
  } catch (const std::exception&) {
    // A broken figure source must not take the admin port down; the 500 says where to look.
    return text(http::status::internal_server_error, "internal error");
  }
  return text(http::status::not_found, "not found");
}

}  // namespace

// One accepted admin connection; its stream's executor is the connection's strand.
struct admin_connection {
  explicit admin_connection(tcp::socket s) : stream(std::move(s)) {}
  beast::tcp_stream stream;
};

struct admin_server::state : std::enable_shared_from_this<admin_server::state> {
  state(asio::io_context& io, handlers hs, admin_options o)
      : ioc(io), strand(asio::make_strand(io)), acceptor(strand), h(std::move(hs)), opts(o) {}

  bool add(const std::shared_ptr<admin_connection>& c) {
    std::lock_guard lock(mu);
    if (stopped || conns.size() >= opts.max_connections) return false;
    conns.emplace(c.get(), c);
    return true;
  }
  void remove(admin_connection* c) {
    std::lock_guard lock(mu);
    conns.erase(c);
  }
  bool is_stopped() {
    std::lock_guard lock(mu);
    return stopped;
  }

  asio::io_context& ioc;
  asio::strand<asio::io_context::executor_type> strand;  // owns the acceptor
  tcp::acceptor acceptor;
  const handlers h;
  const admin_options opts;

  std::mutex mu;
  std::condition_variable listener_closed_cv;
  bool stopped = false;
  bool listener_closed = false;
  bool started = false;
  std::unordered_map<admin_connection*, std::weak_ptr<admin_connection>> conns;
};

namespace {

void close_connection(admin_connection& c) {
  beast::error_code ignored;
  c.stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  c.stream.close();
}

awaitable<void> serve(std::shared_ptr<admin_server::state> st, std::shared_ptr<admin_connection> c) {
  struct unregister {
    admin_server::state& st;
    admin_connection* c;
    ~unregister() { st.remove(c); }
  } guard{*st, c.get()};

  // Bounded: Beast parses a chunked trailer only once it is whole in the buffer, and throws
  // (out of the I/O thread) on a field longer than 64 KiB; a full buffer is an error instead.
  beast::flat_buffer buffer(st->opts.max_header_bytes + st->opts.max_body_bytes);
  beast::error_code peer_ec;
  const auto peer = c->stream.socket().remote_endpoint(peer_ec);
  const bool peer_loopback =
      !peer_ec && (peer.address().is_loopback() ||
                   (peer.address().is_v6() && peer.address().to_v6().is_v4_mapped() &&
                    asio::ip::make_address_v4(asio::ip::v4_mapped, peer.address().to_v6()).is_loopback()));
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(st->opts.max_header_bytes));
    parser.body_limit(st->opts.max_body_bytes);
    c->stream.expires_after(st->opts.read_timeout);
    auto [ec, n] = co_await http::async_read(c->stream, buffer, parser, use_tuple);

    reply r;
    bool keep_alive = false;
    unsigned version = 11;
    http::verb method = http::verb::get;
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      r = text(http::status::request_header_fields_too_large, "request header too large");
    } else if (ec == http::error::body_limit) {
      r = text(http::status::payload_too_large, "request body too large");
    } else if (ec && ec.category() == http::make_error_code(http::error::bad_target).category() &&
               ec != http::error::end_of_stream && ec != http::error::partial_message) {
      r = text(http::status::bad_request, "bad request");
    } else if (ec) {
      // Peer closed, idle/read timeout, or stop(): nothing useful to answer.
      break;
    } else {
      const auto& req = parser.get();
      version = req.version();
      method = req.method();
      keep_alive = req.keep_alive() && !st->is_stopped();
      const std::string_view path = req.target().substr(0, req.target().find('?'));
      switch (policy::decide_admin_access(path, req[http::field::host], peer_loopback, st->opts.access)) {
        case policy::admin_verdict::allow:
          r = route(st->h, req.method(), req.target());
          break;
        case policy::admin_verdict::bad_host:
          r = text(
              http::status::forbidden,
              "forbidden: the Host header must be an IP address, localhost or one of admin.allowed_hosts");
          keep_alive = false;
          break;
        case policy::admin_verdict::loopback_only:
          r = text(http::status::forbidden,
                   "forbidden: this page is served to loopback clients only (admin.expose_status)");
          break;
      }
    }

    http::response<http::string_body> res{r.status, version};
    res.set(http::field::server, "okta-sidecar");
    res.set(http::field::content_type, r.content_type);
    res.set(http::field::cache_control, "no-store");
    res.set("X-Content-Type-Options", "nosniff");
    if (r.allow_header) res.set(http::field::allow, "GET, HEAD");
    if (r.html) {
      res.set("Content-Security-Policy", dashboard_csp);
      res.set("Referrer-Policy", "no-referrer");
    }
    res.keep_alive(keep_alive);
    res.content_length(r.body.size());  // HEAD keeps the GET length and sends no body
    if (method != http::verb::head) res.body() = std::move(r.body);

    c->stream.expires_after(st->opts.write_timeout);
    auto [wec, wn] = co_await http::async_write(c->stream, res, use_tuple);
    if (wec || !keep_alive) break;
  }
  close_connection(*c);
}

awaitable<void> accept_loop(std::shared_ptr<admin_server::state> st) {
  for (;;) {
    auto [ec, sock] = co_await st->acceptor.async_accept(asio::make_strand(st->ioc), use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !st->acceptor.is_open()) co_return;
      asio::steady_timer t(st->strand, accept_error_backoff);
      co_await t.async_wait(use_tuple);
      continue;
    }
    auto c = std::make_shared<admin_connection>(tcp::socket(std::move(sock)));
    if (!st->add(c)) {
      close_connection(*c);  // stopped, or at max_connections
      continue;
    }
    asio::co_spawn(c->stream.get_executor(), serve(st, c), asio::detached);
  }
}

}  // namespace

admin_server::admin_server(asio::io_context& ioc, const tcp::endpoint& ep, handlers h)
    : admin_server(ioc, ep, std::move(h), admin_options{}) {}

admin_server::admin_server(asio::io_context& ioc, const tcp::endpoint& ep, handlers h, admin_options opts)
    : state_(std::make_shared<state>(ioc, std::move(h), opts)) {
  auto& a = state_->acceptor;
  beast::error_code ec;
  auto fail = [&](const char* what) {
    throw std::system_error(ec, std::string("admin: cannot ") + what + " " + describe(ep));
  };
  a.open(ep.protocol(), ec);
  if (ec) fail("open a socket for");
  // SO_REUSEADDR so a restart does not wait out TIME_WAIT connections of the previous run.
  a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (ec) fail("configure");
  a.bind(ep, ec);
  if (ec) fail("bind");
  a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail("listen on");
  local_ = a.local_endpoint(ec);
  if (ec) fail("read the address of");
}

admin_server::~admin_server() { stop(); }

tcp::endpoint admin_server::local_endpoint() const { return local_; }

void admin_server::start() {
  {
    std::lock_guard lock(state_->mu);
    if (state_->started || state_->stopped) return;
    state_->started = true;
  }
  asio::co_spawn(state_->strand, accept_loop(state_), asio::detached);
}

void admin_server::stop() {
  std::vector<std::shared_ptr<admin_connection>> open;
  {
    std::lock_guard lock(state_->mu);
    if (state_->stopped) return;
    state_->stopped = true;
    for (auto& [ptr, weak] : state_->conns) {
      if (auto c = weak.lock()) open.push_back(std::move(c));
    }
  }
  asio::dispatch(state_->strand, [st = state_] {
    beast::error_code ignored;
    st->acceptor.close(ignored);
    {
      std::lock_guard lock(st->mu);
      st->listener_closed = true;
    }
    st->listener_closed_cv.notify_all();
  });
  // Each close runs on its connection's strand, so it never races the session coroutine.
  for (auto& c : open) {
    asio::post(c->stream.get_executor(), [c] { close_connection(*c); });
  }
}

bool admin_server::wait_listener_closed(std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_->mu);
  return state_->listener_closed_cv.wait_for(lock, timeout, [&] { return state_->listener_closed; });
}

}  // namespace okta_sidecar::admin
