// okta-loadgen: a small HTTP/1.1 load generator for the benchmark suite (bench/run).
//
// Why not wrk: no Debian tool drives CONNECT + TLS through a forward proxy at rate, and the
// scale scenario needs thousands of connections held open in phases the orchestrator can
// measure between. Modes:
//   http://  target, no proxy    -> origin-form requests straight to the target
//   http://  target, --proxy     -> absolute-form requests to the proxy (RFC 9112 3.2.2)
//   https:// target, no proxy    -> TLS straight to the target (--connect-to overrides address)
//   https:// target, --proxy     -> CONNECT host:port (RFC 9110 9.3.6), then TLS inside
// Every run is bounded by a request count and a time cap. One thread drives everything, so
// the numbers do not depend on lock contention in the tool itself.
// The result is one JSON object on stdout (latencies in microseconds).
#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <iostream>
#include <list>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

namespace {

// Command-line options (see usage()).
struct options {
  std::string scheme, host, path = "/";
  std::uint16_t port = 0;
  std::optional<std::pair<std::string, std::uint16_t>> proxy;
  std::optional<std::pair<std::string, std::uint16_t>> connect_to;
  std::string ca_file;
  std::string sni;  // default: the target host
  std::string method = "GET";
  std::vector<std::pair<std::string, std::string>> headers;
  int connections = 1;
  long requests = 1000;
  long per_connection = 0;  // > 0: exactly this many on each connection (requests ignored)
  double duration_s = 30;
  double timeout_s = 30;
  int connect_batch = 256;
  bool reconnect = false;
  bool wait_stdin = false;
  bool hold = false;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "okta-loadgen: " << why << "\n"
            << "usage: okta-loadgen --target URL [--proxy HOST:PORT] [--connect-to HOST:PORT]\n"
               "  [--ca FILE] [--sni NAME] [--method M] [--header 'K: V']... [--connections N]\n"
               "  [--requests R | --per-connection K] [--duration S] [--timeout S]\n"
               "  [--connect-batch B] [--reconnect] [--wait-stdin] [--hold]\n";
  std::exit(2);
}

std::pair<std::string, std::uint16_t> split_host_port(const std::string& s) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) usage("expected HOST:PORT, got " + s);
  const long p = std::strtol(s.c_str() + colon + 1, nullptr, 10);
  if (p <= 0 || p > 65535) usage("bad port in " + s);
  return {s.substr(0, colon), static_cast<std::uint16_t>(p)};
}

options parse(int argc, char** argv) {
  options o;
  std::string target;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--target")
      target = val();
    else if (a == "--proxy")
      o.proxy = split_host_port(val());
    else if (a == "--connect-to")
      o.connect_to = split_host_port(val());
    else if (a == "--ca")
      o.ca_file = val();
    else if (a == "--sni")
      o.sni = val();
    else if (a == "--method")
      o.method = val();
    else if (a == "--header") {
      const std::string h = val();
      const auto c = h.find(':');
      if (c == std::string::npos) usage("--header wants 'Name: value'");
      std::string v = h.substr(c + 1);
      while (!v.empty() && v.front() == ' ') v.erase(v.begin());
      o.headers.emplace_back(h.substr(0, c), v);
    } else if (a == "--connections")
      o.connections = std::atoi(val().c_str());
    else if (a == "--requests")
      o.requests = std::atol(val().c_str());
    else if (a == "--per-connection")
      o.per_connection = std::atol(val().c_str());
    else if (a == "--duration")
      o.duration_s = std::atof(val().c_str());
    else if (a == "--timeout")
      o.timeout_s = std::atof(val().c_str());
    else if (a == "--connect-batch")
      o.connect_batch = std::atoi(val().c_str());
    else if (a == "--reconnect")
      o.reconnect = true;
    else if (a == "--wait-stdin")
      o.wait_stdin = true;
    else if (a == "--hold")
      o.hold = true;
    else
      usage("unknown option " + a);
  }
  if (target.empty()) usage("--target is required");
  const auto sep = target.find("://");
  if (sep == std::string::npos) usage("--target must be an http:// or https:// URL");
  o.scheme = target.substr(0, sep);
  if (o.scheme != "http" && o.scheme != "https") usage("scheme must be http or https");
  std::string rest = target.substr(sep + 3);
  const auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) o.path = rest.substr(slash);
  if (authority.find(':') == std::string::npos) authority += o.scheme == "https" ? ":443" : ":80";
  std::tie(o.host, o.port) = split_host_port(authority);
  if (o.sni.empty()) o.sni = o.host;
  if (o.connections < 1 || o.connect_batch < 1 || o.duration_s <= 0 || o.timeout_s <= 0)
    usage("connections, connect-batch, duration and timeout must be positive");
  if (o.per_connection > 0) o.requests = o.per_connection * o.connections;
  if (o.requests < 1) usage("--requests must be positive");
  return o;
}

// One client connection: TCP, optionally TLS over it (after CONNECT when proxied).
struct conn {
  explicit conn(asio::io_context& ioc) : sock(ioc) {}
  tcp::socket sock;
  std::unique_ptr<ssl::stream<tcp::socket&>> tls;
  beast::flat_buffer buf;
  steady::time_point op_deadline = steady::time_point::max();
  bool timed_out = false;
};

// Everything the workers share (one thread, so no locks).
struct state {
  state(const options& o, asio::io_context& i) : opt(o), ioc(i), tls_ctx(ssl::context::tls_client) {}
  const options& opt;
  asio::io_context& ioc;
  ssl::context tls_ctx;
  tcp::endpoint dial;  // where TCP connections go (proxy, connect_to or the target)
  long tickets_left = 0;
  steady::time_point deadline = steady::time_point::max();
  bool stopping = false;
  int connecting = 0;
  int connected = 0, connect_failed = 0, workers_left = 0;
  std::list<std::shared_ptr<conn>> live;  // for the watchdog and --hold
  std::vector<std::uint32_t> latency_us, connect_us;
  std::map<std::string, long> errors;
  std::map<int, long> statuses;
  long ok = 0, opened = 0;
  double first_ok_unix = 0, last_ok_unix = 0;
  steady::time_point t_start{}, t_end{};
  std::optional<asio::steady_timer> gate;
  std::promise<void> all_connected;
  bool all_connected_set = false;
};

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::uint32_t us_since(steady::time_point t0) {
  return static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - t0).count());
}

void arm(state& st, conn& c) {
  c.op_deadline = steady::now() + std::chrono::duration_cast<steady::duration>(
                                      std::chrono::duration<double>(st.opt.timeout_s));
}

// Closes connections whose current operation overran --timeout, and everything at the cap.
asio::awaitable<void> watchdog(state& st) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (st.workers_left > 0) {
    t.expires_after(std::chrono::milliseconds(100));
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    const auto now = steady::now();
    const bool hard_stop =
        st.deadline != steady::time_point::max() && now > st.deadline + std::chrono::seconds(2);
    for (auto& c : st.live) {
      if (c->sock.is_open() && (hard_stop || now > c->op_deadline)) {
        c->timed_out = true;
        beast::error_code ignored;
        c->sock.close(ignored);
      }
    }
  }
}

void note_error(state& st, const conn* c, const char* kind) {
  ++st.errors[c && c->timed_out ? "timeout" : kind];
}

void maybe_signal_connected(state& st) {
  if (!st.all_connected_set && st.connected + st.connect_failed >= st.opt.connections) {
    st.all_connected_set = true;
    st.all_connected.set_value();
  }
}

// TCP connect (+ CONNECT + TLS handshake); nullptr on failure (counted).
asio::awaitable<std::shared_ptr<conn>> open_conn(state& st) {
  auto& ioc = st.ioc;
  while (st.connecting >= st.opt.connect_batch) {  // keep SYN bursts under the listen backlog
    asio::steady_timer t(ioc, std::chrono::milliseconds(1));
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  ++st.connecting;
  struct release {
    state& s;
    ~release() { --s.connecting; }
  } rel{st};
  auto c = std::make_shared<conn>(ioc);
  st.live.push_back(c);
  const auto t0 = steady::now();
  arm(st, *c);
  auto [ec] = co_await c->sock.async_connect(st.dial, asio::as_tuple(asio::use_awaitable));
  if (ec) {
    note_error(st, c.get(), "connect");
    co_return nullptr;
  }
  beast::error_code nd;
  c->sock.set_option(tcp::no_delay(true), nd);
  ++st.opened;
  const std::string authority = st.opt.host + ":" + std::to_string(st.opt.port);
  if (st.opt.scheme == "https" && st.opt.proxy) {
    const std::string req = "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n";
    auto [wec, n] =
        co_await asio::async_write(c->sock, asio::buffer(req), asio::as_tuple(asio::use_awaitable));
    (void)n;
    if (wec) {
      note_error(st, c.get(), "proxy_connect");
      co_return nullptr;
    }
    http::response_parser<http::empty_body> p;
    p.skip(true);  // a 2xx answer to CONNECT has no body (RFC 9110 9.3.6)
    auto [rec, m] = co_await http::async_read_header(c->sock, c->buf, p, asio::as_tuple(asio::use_awaitable));
    (void)m;
    if (rec || p.get().result_int() / 100 != 2) {
      note_error(st, c.get(), "proxy_connect");
      co_return nullptr;
    }
  }
  if (st.opt.scheme == "https") {
    c->tls = std::make_unique<ssl::stream<tcp::socket&>>(c->sock, st.tls_ctx);
    SSL_set_tlsext_host_name(c->tls->native_handle(), st.opt.sni.c_str());
    c->tls->set_verify_callback(ssl::host_name_verification(st.opt.sni));
    auto [hec] =
        co_await c->tls->async_handshake(ssl::stream_base::client, asio::as_tuple(asio::use_awaitable));
    if (hec) {
      note_error(st, c.get(), "tls_handshake");
      co_return nullptr;
    }
  }
  st.connect_us.push_back(us_since(t0));
  c->op_deadline = steady::time_point::max();
  co_return c;
}

void forget(state& st, const std::shared_ptr<conn>& c) {
  if (!c) return;
  beast::error_code ignored;
  c->sock.close(ignored);
  st.live.remove(c);
}

template <class Stream>
asio::awaitable<beast::error_code> exchange(Stream& s, conn& c, http::request<http::empty_body>& req,
                                            http::response_parser<http::string_body>& p, const char** kind) {
  auto [wec, wn] = co_await http::async_write(s, req, asio::as_tuple(asio::use_awaitable));
  (void)wn;
  if (wec) {
    *kind = "write";
    co_return wec;
  }
  auto [rec, rn] = co_await http::async_read(s, c.buf, p, asio::as_tuple(asio::use_awaitable));
  (void)rn;
  if (rec) *kind = "read";
  co_return rec;
}

asio::awaitable<void> worker(state& st) {
  std::shared_ptr<conn> c;
  long mine = 0;
  bool first = true;
  int consecutive_failures = 0;
  http::request<http::empty_body> req;
  req.method_string(st.opt.method);
  const bool absolute = st.opt.scheme == "http" && st.opt.proxy.has_value();
  req.target(absolute ? "http://" + st.opt.host + ":" + std::to_string(st.opt.port) + st.opt.path
                      : st.opt.path);
  req.version(11);
  req.set(http::field::host, st.opt.host + ":" + std::to_string(st.opt.port));
  req.set(http::field::user_agent, "okta-loadgen");
  for (const auto& [k, v] : st.opt.headers) req.set(k, v);
  req.keep_alive(!st.opt.reconnect);

  for (;;) {
    if (first) {
      first = false;
      if (!st.opt.reconnect) c = co_await open_conn(st);
      if (c || st.opt.reconnect)
        ++st.connected;
      else
        ++st.connect_failed;
      maybe_signal_connected(st);
      if (st.gate) co_await st.gate->async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (!c && !st.opt.reconnect && !st.stopping) {
      c = co_await open_conn(st);
      if (!c) {
        if (++consecutive_failures > 50 || steady::now() > st.deadline) break;
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(10));
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
    }
    if (st.stopping || steady::now() > st.deadline || st.tickets_left <= 0 ||
        (st.opt.per_connection > 0 && mine >= st.opt.per_connection))
      break;
    --st.tickets_left;
    ++mine;
    const auto t_conn = steady::now();
    if (!c) {  // --reconnect: the sample covers the whole new-connection cost
      c = co_await open_conn(st);
      if (!c) {
        if (++consecutive_failures > 50) break;
        continue;
      }
    }
    const auto t0 = st.opt.reconnect ? t_conn : steady::now();
    http::response_parser<http::string_body> p;
    p.body_limit(64 * 1024 * 1024);
    const char* kind = "read";
    arm(st, *c);
    const auto ec = c->tls ? co_await exchange(*c->tls, *c, req, p, &kind)
                           : co_await exchange(c->sock, *c, req, p, &kind);
    c->op_deadline = steady::time_point::max();
    if (ec) {
      note_error(st, c.get(), kind);
      forget(st, c);
      c.reset();
      if (++consecutive_failures > 50) break;
      continue;
    }
    consecutive_failures = 0;
    st.latency_us.push_back(us_since(t0));
    const int status = p.get().result_int();
    ++st.statuses[status];
    if (status / 100 == 2) {
      ++st.ok;
      const double now = unix_now();
      if (st.first_ok_unix == 0) st.first_ok_unix = now;
      st.last_ok_unix = now;
    } else {
      ++st.errors["http_" + std::to_string(status)];
    }
    if (st.opt.reconnect || !p.get().keep_alive()) {
      if (c->tls && st.opt.reconnect) {
        // close_notify is what a polite client sends; its cost belongs to the client side.
        c->tls.reset();
      }
      forget(st, c);
      c.reset();
    }
  }
  if (c && !st.opt.hold) forget(st, c);
  if (--st.workers_left == 0) st.t_end = steady::now();
  maybe_signal_connected(st);
}

nlohmann::json percentiles(std::vector<std::uint32_t>& v) {
  nlohmann::json j = nlohmann::json::object();
  if (v.empty()) return j;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    const auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
  };
  double sum = 0;
  for (auto x : v) sum += x;
  j["count"] = v.size();
  j["p50"] = at(0.50);
  j["p90"] = at(0.90);
  j["p99"] = at(0.99);
  j["max"] = v.back();
  j["mean"] = sum / static_cast<double>(v.size());
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  const options opt = parse(argc, argv);
  asio::io_context ioc(1);
  state st(opt, ioc);
  if (opt.scheme == "https") {
    st.tls_ctx.set_verify_mode(ssl::verify_peer);
    if (!opt.ca_file.empty())
      st.tls_ctx.load_verify_file(opt.ca_file);
    else
      st.tls_ctx.set_default_verify_paths();
  }
  {
    const auto& [h, p] = opt.proxy        ? *opt.proxy
                         : opt.connect_to ? *opt.connect_to
                                          : std::pair{opt.host, opt.port};
    tcp::resolver r(ioc);
    beast::error_code ec;
    auto res = r.resolve(h, std::to_string(p), ec);
    if (ec || res.empty()) {
      std::cerr << "okta-loadgen: cannot resolve " << h << ": " << ec.message() << "\n";
      return 1;
    }
    st.dial = *res.begin();
  }
  st.tickets_left = opt.requests;
  st.workers_left = opt.connections;
  st.latency_us.reserve(static_cast<std::size_t>(std::min<long>(opt.requests, 10'000'000)));
  const auto cap =
      std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(opt.duration_s));
  if (opt.wait_stdin) {
    st.gate.emplace(ioc, steady::time_point::max());
  }
  st.t_start = steady::now();
  // While the orchestrator measures between phases only the per-operation timeout applies.
  st.deadline = opt.wait_stdin ? steady::time_point::max() : st.t_start + cap;
  for (int i = 0; i < opt.connections; ++i) asio::co_spawn(ioc, worker(st), asio::detached);
  asio::co_spawn(ioc, watchdog(st), asio::detached);

  auto connected = st.all_connected.get_future();
  std::thread io([&] { ioc.run(); });
  if (opt.wait_stdin) {
    connected.wait();
    // Counts are read after the io thread published them through the promise.
    std::cout << nlohmann::json{{"event", "connected"},
                                {"connected", st.connected},
                                {"failed", st.connect_failed}}
                     .dump()
              << std::endl;
    std::string line;
    std::getline(std::cin, line);
    asio::post(ioc, [&] {
      st.t_start = steady::now();  // the measured phase starts when the requests do
      st.deadline = st.t_start + cap;
      st.gate->cancel();
    });
  }
  io.join();
  if (st.t_end == steady::time_point{}) st.t_end = steady::now();
  const double elapsed = std::chrono::duration<double>(st.t_end - st.t_start).count();
  long total_errors = 0;
  for (const auto& [k, n] : st.errors) total_errors += n;
  nlohmann::json statuses = nlohmann::json::object();
  for (const auto& [k, n] : st.statuses) statuses[std::to_string(k)] = n;
  nlohmann::json out{
      {"target", opt.scheme + "://" + opt.host + ":" + std::to_string(opt.port) + opt.path},
      {"via_proxy", opt.proxy.has_value()},
      {"reconnect", opt.reconnect},
      {"connections", opt.connections},
      {"requests_planned", opt.requests},
      {"requests_done", static_cast<long>(st.latency_us.size())},
      {"ok", st.ok},
      {"errors", st.errors},
      {"errors_total", total_errors},
      {"status", statuses},
      {"connections_opened", st.opened},
      {"elapsed_s", elapsed},
      {"rps", elapsed > 0 ? static_cast<double>(st.ok) / elapsed : 0.0},
      {"first_ok_unix", st.first_ok_unix},
      {"last_ok_unix", st.last_ok_unix},
      {"latency_us", percentiles(st.latency_us)},
      {"connect_us", percentiles(st.connect_us)},
  };
  std::cout << out.dump() << std::endl;
  if (opt.hold) {  // connections stay open until the orchestrator has measured
    std::string line;
    std::getline(std::cin, line);
  }
  return 0;
}
