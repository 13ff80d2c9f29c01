// One client connection: the request loop, proxy authentication, CONNECT (intercept or blind
// tunnel). The top of the connection's layers, each including only those below it
// (docs/architecture.md "proxy: one include direction"):
//   session.cpp       the connection loop (this file)
//   pipeline.*        one request's stages, classify -> breaker -> admission -> upstream -> relay,
//                     with the rate-limit and failure retries
//   relay.*           the upstream request written, its response relayed or read whole
//   request_scope.*   a request's access-log line and metrics on every exit; the local answers
//   context.hpp       stream and HTTP types, the connection's context, a request's record
// Downstream = the app, upstream = Okta.
#include <algorithm>
#include <array>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <optional>
#include <tuple>

#include "context.hpp"
#include "okta_sidecar/http/request_fields.hpp"
#include "okta_sidecar/http/request_validator.hpp"
#include "okta_sidecar/http/target.hpp"
#include "okta_sidecar/http/trace_context.hpp"
#include "okta_sidecar/net/deadline_list.hpp"
#include "okta_sidecar/proxy/server.hpp"
#include "okta_sidecar/tls/intercept_context.hpp"
#include "pipeline.hpp"
#include "request_scope.hpp"

namespace okta_sidecar::proxy {
namespace detail {
namespace {

using namespace asio::experimental::awaitable_operators;
using error_code = boost::system::error_code;

// How much the next read may add to a client buffer: flat_buffer::prepare throws past the
// buffer's bound (which keeps Beast from ever meeting a field it cannot store).
std::size_t read_room(const beast::flat_buffer& b) {
  return std::min<std::size_t>(4096, b.max_size() - b.size());
}

// Reading the next request head. Collected whole first and looked at in its raw bytes: Beast
// unfolds obs-fold silently, so the validator never sees it (RFC 9112 §5.2: a proxy must reject
// or replace it; an upstream that unfolds differently is a smuggling vector). The header timeout
// covers the whole head (slow-loris clients are cut off there).
struct head_reader {
  std::size_t max_bytes;
  std::size_t scanned = 0;
  http::raw_head st = http::raw_head::incomplete;
  error_code ec;

  head_reader(conn_ctx& c, net::stream& s, bhttp::request_parser<bhttp::empty_body>& p)
      : max_bytes(c.rt->cfg.client.max_header_bytes) {
    const auto& cfg = c.rt->cfg.client;
    p.header_limit(static_cast<std::uint32_t>(max_bytes));
    p.body_limit(cfg.max_body_bytes);
    s.expires_after(milliseconds(cfg.header_timeout_ms));
  }
  bool refused() const { return st == http::raw_head::obs_fold || ec; }

  // Parses what the buffer holds: true when the head is done, parsed whole or refused; false
  // when it needs more bytes.
  bool advance(beast::flat_buffer& buf, bhttp::request_parser<bhttp::empty_body>& p) {
    const std::string_view raw(static_cast<const char*>(buf.data().data()), buf.size());
    if (st != http::raw_head::complete) st = http::scan_raw_head(raw, scanned);
    if (st == http::raw_head::obs_fold) return true;
    const bool full = buf.size() >= max_bytes || read_room(buf) == 0;
    if (st == http::raw_head::complete || full) {
      // Parsed here, from the buffer. Beast may still want more: the scan takes "\r\n\r" for
      // the end of a head before its last "\n" has come.
      buf.consume(p.put(buf.data(), ec));
      if (ec != bhttp::error::need_more) return true;
      if (full) {
        ec = bhttp::error::header_limit;
        return true;
      }
      ec = {};
    }
    scanned = raw.empty() ? 0 : raw.size() - 1;
    return false;
  }
};

// Reads until the head is done (true), or the connection ends first: closed, timed out (false).
asio::awaitable<bool> read_head(conn_ctx& c, net::stream& s, beast::flat_buffer& buf,
                                bhttp::request_parser<bhttp::empty_body>& p, head_reader& h) {
  while (!h.advance(buf, p)) {
    // The bytes are usually there already (a busy client's next request, or the wake-up of a
    // parked connection): read them without an operation, and wait only when there are none.
    error_code ec;
    std::size_t rn = s.read_now(buf.prepare(read_room(buf)), ec);
    if (ec == asio::error::would_block) {
      std::tie(ec, rn) = co_await s.async_read_some_after_empty(buf.prepare(read_room(buf)), use_tuple);
    }
    if (ec) {
      if (ec == beast::error::timeout) c.svc.metrics.timeout_client_header.get().inc();
      co_return false;
    }
    buf.commit(rn);
  }
  co_return true;
}

// The answer to a refused head; the connection closes after it.
asio::awaitable<void> refuse_head(conn_ctx& c, net::stream& s, const head_reader& h, request_scope& scope) {
  auto& rec = scope.begin();
  if (h.st == http::raw_head::obs_fold) {
    co_await send_local(c, s, http::local_error::bad_request, "obsolete line folding in the request head",
                        rec, false);
  } else if (h.ec == bhttp::error::header_limit) {
    co_await send_local(c, s, http::local_error::headers_too_large, "request head too large", rec, false);
  } else if (h.ec == bhttp::error::body_limit) {
    // Beast checks Content-Length against body_limit while parsing the head.
    co_await send_local(c, s, http::local_error::payload_too_large, "request body too large", rec, false);
  } else {
    co_await send_local(c, s, http::local_error::bad_request, "malformed request", rec, false);
  }
}

asio::awaitable<void> handle_connect(conn_ctx& c, net::stream& down, beast::flat_buffer& buf,
                                     bhttp::request_parser<bhttp::empty_body>& hp, request_scope& scope);

bool proxy_auth_ok(conn_ctx& c, const http::request_fields& fields) {
  if (!c.rt->proxy_auth.enabled()) return true;
  if (fields.proxy_authorization.empty()) return false;
  auto user = c.rt->proxy_auth.authenticate(fields.proxy_authorization);
  if (user) c.user = std::move(*user);
  return user.has_value();
}

// Where a request goes: its destination, or why it may not go there. `refuse` is answered with
// host_not_allowed and may keep the connection; `fatal` is answered and closes it.
struct routing {
  destination dest;
  std::string refuse;
  std::optional<http::local_error> fatal;
  std::string_view fatal_detail;
};

// The policy's answer for an absolute-form target, from the connection's memo when the target
// names the same scheme, host and port as the one before, under the same runtime.
const host_route& route_of(conn_ctx& c, const http::parsed_target& t) {
  if (!c.last_route) c.last_route = std::make_unique<host_route>();
  auto& m = *c.last_route;
  const bool https = t.scheme == "https";
  if (m.rt == c.rt && m.https == https && m.port == t.port && m.host_as_sent == t.host) return m;
  m = host_route{};
  m.rt = c.rt;
  m.https = https;
  m.host_as_sent = t.host;
  m.port = t.port;
  auto host = policy::host_policy::normalize_host(t.host);
  if (!host) return m;
  m.host = std::move(*host);
  if (!https && !c.rt->cfg.access.allow_cleartext && c.rt->hosts.intercepts(m.host)) {
    m.cleartext_refused = true;
  } else {
    auto d = c.rt->hosts.decide_normal(m.host, t.port);
    if (d.r == policy::route::refuse) m.refuse = std::move(d.why);
    m.inspect = d.r == policy::route::intercept;
  }
  return m;
}

// Takes the target's path out of `valid` (nothing reads it after the routing).
routing route(conn_ctx& c, const bhttp::request_header<>& req, const http::request_fields& fields,
              http::validation& valid, const std::optional<upstream::origin>& tunnel) {
  routing r;
  auto& dest = r.dest;
  const std::string_view host_header = fields.host;
  if (tunnel) {
    dest.origin = *tunnel;
    if (req.target().starts_with("/")) {
      dest.path_and_query = std::string(req.target());
    } else if (auto& t = valid.absolute; t && t->host == dest.origin.host) {  // both lower-case
      dest.path_and_query = std::move(t->path_and_query);
    } else {
      r.refuse = "request target does not match the CONNECT host";
    }
    if (r.refuse.empty() && !host_header.empty() &&
        !http::host_header_matches_tunnel(host_header, dest.origin.host, dest.origin.port)) {
      r.refuse = "Host header does not match the CONNECT host";
    }
    return r;
  }
  auto& t = valid.absolute;
  if (!t) {
    r.fatal = http::local_error::bad_request;
    r.fatal_detail = "a proxy request needs an absolute-form target (http://host/path)";
    return r;
  }
  const host_route& to = route_of(c, *t);
  if (to.host.empty()) {
    r.refuse = "invalid host";
    return r;
  }
  dest.origin = upstream::origin{to.https, to.host, t->port};
  dest.path_and_query = std::move(t->path_and_query);
  if (!host_header.empty() && !(valid.host && http::host_header_matches(*valid.host, *t))) {
    r.refuse = "Host header disagrees with the request URL";
  } else if (to.cleartext_refused) {
    // The app's Authorization header would cross the network in clear (issue 14).
    r.fatal = http::local_error::cleartext_refused;
    r.fatal_detail = "http:// to an intercepted host; use https://";
  } else {
    r.refuse = to.refuse;
    dest.inspect = to.inspect;
  }
  return r;
}

// What serve_request keeps across its waits. On the heap, recycled by the thread: in the
// coroutine's frame it made that frame too large for Asio's frame recycling.
struct request_state : net::recycled<request_state> {
  explicit request_state(conn_ctx& c) : scope(c) {}
  // Ends (writes its access-log line) when this request does, whichever way.
  request_scope scope;
  bhttp::request_parser<bhttp::empty_body> hp;
  http::request_fields fields;  // views into hp's fields
  http::validation valid;
  routing to;
};

// The fields the proxy reads, and the head's validation, from one list of the fields. Not in
// serve_request: the list would take room in its frame across every wait.
void read_fields(const conn_ctx& c, const bhttp::request_header<>& req, request_state& st) {
  const auto v = views(req);
  st.fields = http::read_request_fields(v);
  st.valid = http::validate_request(req.method_string(), req.target(), req.version(), v, c.rt->limits);
}

// One request on a connection, from its head to its answer; false when the connection ends.
asio::awaitable<bool> serve_request(conn_ctx& c, net::stream& s, beast::flat_buffer& buf,
                                    const std::optional<upstream::origin>& tunnel) {
  const auto st = std::make_unique<request_state>(c);
  auto& [scope, hp, fields, valid, to] = *st;
  head_reader h(c, s, hp);
  // Most heads are in the buffer already: the coroutines run only when one is not, or is refused.
  if (!h.advance(buf, hp)) {
    if (!co_await read_head(c, s, buf, hp, h)) co_return false;
  }
  if (h.refused()) {
    co_await refuse_head(c, s, h, scope);
    co_return false;
  }
  auto& rec = scope.begin();
  auto& req = hp.get();
  read_fields(c, req, *st);
  rec.method = std::string(req.method_string());
  rec.target = std::string(req.target());
  if (!fields.traceparent.empty()) rec.trace_id = http::trace_id_of(fields.traceparent).value_or("");
  const unsigned version = req.version();
  const bool keep_alive = fields.keep_alive(version);

  if (!tunnel && !proxy_auth_ok(c, fields)) {
    co_await send_local(c, s, http::local_error::proxy_auth_required, "proxy authentication required", rec,
                        false, version);
    co_return false;
  }
  if (valid.code != http::verdict_code::ok) {
    auto err = valid.code == http::verdict_code::payload_too_large   ? http::local_error::payload_too_large
               : valid.code == http::verdict_code::headers_too_large ? http::local_error::headers_too_large
                                                                     : http::local_error::bad_request;
    co_await send_local(c, s, err, valid.detail, rec, false, version);
    co_return false;
  }
  if (c.svc.draining.load()) {
    co_await send_local(c, s, http::local_error::shutting_down, "the sidecar is shutting down", rec, false,
                        version, 1);
    co_return false;
  }
  if (!tunnel && req.method() == bhttp::verb::connect) {
    co_await handle_connect(c, s, buf, hp, scope);
    co_return false;
  }
  to = route(c, req, fields, valid, tunnel);
  if (to.fatal) {
    rec.host = to.dest.origin.host;
    co_await send_local(c, s, *to.fatal, to.fatal_detail, rec, false, version);
    co_return false;
  }
  rec.host = to.dest.origin.host;
  if (!to.refuse.empty()) {
    co_await send_local(c, s, http::local_error::host_not_allowed, to.refuse, rec, keep_alive, version);
    const bool again = keep_alive && valid.body.kind == http::framing_kind::none;
    co_return again;
  }
  co_return co_await forward(c, s, buf, hp, fields, to.dest, valid, rec);
}

// Two one-way pumps; each ends by half-closing the other side (RFC 9110 §9.3.6).
asio::awaitable<void> pump(net::stream& from, net::stream& to, duration idle, std::uint64_t& bytes) {
  relay_buffer chunk;
  for (;;) {
    from.expires_after(idle);
    auto [ec, n] = co_await from.async_read_some(asio::buffer(chunk.data(), chunk.size()), use_tuple);
    if (n > 0) {
      to.expires_after(idle);
      auto [wec, wn] = co_await to.async_write_all(asio::buffer(chunk.data(), n), use_tuple);
      bytes += wn;
      if (wec) break;
    }
    if (ec) break;
  }
  boost::system::error_code ignored;
  to.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> blind_tunnel(conn_ctx& c, net::stream& down, beast::flat_buffer& buf,
                                   const upstream::origin& o, request_record& rec) {
  // Named, not temporaries inside the co_await expression: GCC 12 destroys such temporaries
  // twice (a double free of the host string, seen on every blind tunnel).
  const upstream::origin plain_origin{false, o.host, o.port};
  const auto connect_deadline = c.svc.clock.now() + milliseconds(c.rt->cfg.upstream.connect_timeout_ms);
  auto acq = co_await c.svc.pool.connect(plain_origin, connect_deadline);
  if (!acq.conn) {
    const auto err = acq.status == upstream::connect_status::forbidden_address
                         ? http::local_error::host_not_allowed
                         : http::local_error::upstream_unreachable;
    const std::string_view detail = upstream::to_string(acq.status);
    co_await send_local(c, down, err, detail, rec, false);
    co_return;
  }
  static constexpr std::string_view established = "HTTP/1.1 200 Connection Established\r\n\r\n";
  auto [ec, n] =
      co_await down.async_write_all(asio::buffer(established.data(), established.size()), use_tuple);
  if (ec) co_return;
  rec.status = 200;
  auto& up = acq.conn->stream();
  if (buf.size() > 0) {
    auto [wec, wn] = co_await up.async_write_all(buf.data(), use_tuple);
    if (wec) co_return;
    buf.consume(buf.size());
  }
  const auto idle = milliseconds(c.rt->cfg.client.idle_timeout_ms);
  std::uint64_t up_bytes = 0;
  co_await (pump(down, up, idle, up_bytes) && pump(up, down, idle, rec.bytes_out));
}

asio::awaitable<void> handle_connect(conn_ctx& c, net::stream& down, beast::flat_buffer& buf,
                                     bhttp::request_parser<bhttp::empty_body>& hp, request_scope& scope) {
  auto& rec = scope.rec();
  auto& req = hp.get();
  auto authority = http::parse_authority(req.target());
  std::optional<std::string> host;
  if (authority) host = policy::host_policy::normalize_host(authority->first);
  if (!authority) {
    co_await send_local(c, down, http::local_error::bad_request, "CONNECT needs host:port", rec, false);
    co_return;
  }
  if (!host) {
    // A well-formed host:port whose host the policy will not even name (localhost, odd IP
    // spellings): a refused destination, as in absolute form, not a malformed request.
    co_await send_local(c, down, http::local_error::host_not_allowed, "host not allowed", rec, false);
    co_return;
  }
  rec.host = *host;
  const auto d = c.rt->hosts.decide(*host, authority->second);
  if (d.r == policy::route::refuse) {
    co_await send_local(c, down, http::local_error::host_not_allowed, d.why, rec, false);
    co_return;
  }
  const upstream::origin o{true, *host, authority->second};
  if (d.r == policy::route::tunnel) {
    c.svc.metrics.connections_tunnel.get().inc();
    rec.bucket = "tunnel";
    co_await blind_tunnel(c, down, buf, o, rec);
    co_return;
  }

  static constexpr std::string_view established = "HTTP/1.1 200 Connection Established\r\n\r\n";
  down.expires_after(milliseconds(c.rt->cfg.client.header_timeout_ms));
  auto [wec, wn] =
      co_await down.async_write_all(asio::buffer(established.data(), established.size()), use_tuple);
  if (wec) co_return;
  rec.status = 200;
  rec.bucket = "connect";
  scope.finish();  // before the lines of the requests inside the tunnel

  // The first byte tells TLS (a handshake record, 0x16) from plain HTTP inside the tunnel.
  if (buf.size() == 0) {
    down.expires_after(milliseconds(c.rt->cfg.client.header_timeout_ms));
    auto [ec, n] = co_await down.async_read_some(buf.prepare(read_room(buf)), use_tuple);
    if (ec) co_return;
    buf.commit(n);
  }
  const auto first = static_cast<const unsigned char*>(buf.data().data())[0];
  if (first != 0x16) {
    if (!c.rt->cfg.access.allow_cleartext) {
      // Plaintext HTTP inside a CONNECT to an intercepted host: answered in plaintext, which is
      // what the client speaks, and closed (issue 14).
      request_scope refused(c);
      refused.begin().host = *host;
      co_await send_local(c, down, http::local_error::cleartext_refused,
                          "plaintext HTTP inside CONNECT to an intercepted host; use TLS", refused.rec(),
                          false);
      co_return;
    }
    c.svc.metrics.connections_intercept_plain.get().inc();
    c.tunnel = upstream::origin{false, *host, authority->second};
    co_return;
  }
  c.svc.metrics.connections_intercept.get().inc();
  // The tunnel's first bytes are the ClientHello (or its start): the handshake begins from them.
  const bool tls_ready =
      down.start_tls(c.svc.intercept_tls.native_handle(), net::stream::role::server, buf.data());
  buf.consume(buf.size());
  if (!tls_ready || !tls::use_leaf_for(down.native_handle(), c.svc.leaves, *host)) {
    c.svc.log.warn(logging::event("cannot mint a certificate").with("conn", c.id).with("host", *host));
    co_return;
  }
  down.expires_after(milliseconds(c.rt->cfg.client.header_timeout_ms));
  auto [hec, hn] = co_await down.async_handshake(use_tuple);
  if (hec) {
    c.svc.log.info(logging::event("client TLS handshake failed")
                       .with("conn", c.id)
                       .with("host", *host)
                       .with("error", hec.message()));
    co_return;
  }
  c.tunnel = o;
}

// A client whose address access.allowed_clients does not name: one answer, then the close. A
// coroutine of its own, so its request scope is not part of every session's frame.
asio::awaitable<void> refuse_client(conn_ctx& c, net::stream& down) {
  request_scope refused(c);
  co_await send_local(c, down, http::local_error::client_not_allowed, "source address not allowed",
                      refused.begin(), false);
}

class parked_connections;

// A client connection between its requests: what outlives the coroutines that serve them. Its
// hook places it among its worker's parked connections while it waits for its next request.
struct connection : net::deadline_hook {
  connection(services& svc, tcp::socket sock, std::uint64_t id, std::shared_ptr<session_control> control)
      : ctl(std::move(control)),
        // The generation first: the first request's refresh then keeps this runtime.
        c{svc, id, *ctl, peer_of(sock), svc.rt.generation(), svc.rt.load()},
        down(std::move(sock)),
        // Bounded by the head limit: requests are parsed in place and bodies pass through in
        // pieces, so only a head, a chunk header or a trailer ever has to fit (see
        // config::max_head_bytes).
        buf(c.rt->cfg.client.max_header_bytes) {
    error_code ignored;
    down.socket().set_option(tcp::no_delay(true), ignored);
  }
  static std::string peer_of(const tcp::socket& s) {
    error_code ec;
    auto remote = s.remote_endpoint(ec);
    return ec ? std::string() : remote.address().to_string();
  }

  std::shared_ptr<session_control> ctl;
  conn_ctx c;
  net::stream down;
  beast::flat_buffer buf;
  bool refused = false;     // access.allowed_clients does not name it: one answer, then the close
  bool in_tunnel = false;   // serving the inside of an intercepted CONNECT (c.tunnel)
  time_point idle_until{};  // the keep-alive timeout of the wait for the next request
  parked_connections* parked = nullptr;  // its worker's, once it has parked
};

// The keep-alive deadlines of one worker's parked connections, behind one timer: a parked
// connection holds its socket's wait and a place in this list, not a timer wait of its own
// (about 350 bytes each). An Asio service, so there is one per event loop and it goes with it.
class parked_connections : public asio::execution_context::service {
 public:
  using key_type = parked_connections;
  static inline asio::execution_context::id id;

  // Workers are io_contexts (proxy::server).
  explicit parked_connections(asio::execution_context& ctx)
      : service(ctx), timer_(static_cast<asio::io_context&>(ctx)) {}

  static parked_connections& of(const asio::any_io_executor& ex) {
    return asio::use_service<parked_connections>(asio::query(ex, asio::execution::context));
  }

  void add(connection& k) {
    list_.add(k, k.idle_until);
    arm();
  }
  void remove(connection& k) { list_.remove(k); }

 private:
  void shutdown() override {}

  void arm() {
    const time_point next = list_.next_deadline();
    if (next == armed_) return;
    armed_ = next;
    if (next == time_point::max()) {
      timer_.cancel();
      return;
    }
    timer_.expires_at(next);  // ends the wait for an earlier `next`, if any
    timer_.async_wait([this](error_code ec) {
      if (!ec) sweep();
    });
  }

  // Closes the sockets of the connections whose keep-alive timeout has passed: each one's wait
  // ends, and with it the connection (see park()).
  void sweep() {
    armed_ = time_point::max();
    const time_point now = steady_clock::now();
    while (auto* h = list_.pop_expired(now)) {
      error_code ignored;
      static_cast<connection*>(h)->down.socket().close(ignored);
    }
    arm();
  }

  net::deadline_list list_;
  asio::steady_timer timer_;
  time_point armed_ = time_point::max();
};

enum class next_step { end, park };

// How long a connection waits for its next request inside its coroutine before it is parked.
constexpr auto linger = milliseconds(10);

// Serves the requests the connection has sent, until it has to wait for the next one (park) or
// is done. The CONNECT's frames are gone before its tunnel is served: an intercepted connection
// is long-lived, and they would otherwise stay with it.
asio::awaitable<next_step> serve_some(connection& k) {
  conn_ctx& c = k.c;
  for (;;) {
    c.svc.rt.refresh(c.rt, c.rt_seen);
    static const std::optional<upstream::origin> proxy_port;
    const bool again = co_await serve_request(c, k.down, k.buf, k.in_tunnel ? c.tunnel : proxy_port);
    if (!again && !k.in_tunnel && c.tunnel) {
      k.in_tunnel = true;
    } else if (!again || c.svc.draining.load()) {
      co_return next_step::end;
    }
    if (k.buf.size() == 0) {
      // A busy client's next request is often there already: read it without a wait.
      error_code ec;
      k.buf.commit(k.down.read_now(k.buf.prepare(read_room(k.buf)), ec));
      if (ec == asio::error::would_block) {
        // Otherwise it comes within moments: it is awaited here, in the frames already made; a
        // connection quiet for longer is parked.
        const auto now = steady_clock::now();
        k.idle_until = now + milliseconds(c.rt->cfg.client.idle_timeout_ms);
        k.down.expires_softly_at(std::min(k.idle_until, now + linger));
        c.ctl.waiting = &k.down.socket();
        std::tie(ec, std::ignore) = co_await k.down.async_wait_readable(use_tuple);
        c.ctl.waiting = nullptr;
        if (ec == beast::error::timeout) co_return next_step::park;
      }
      if (ec) co_return next_step::end;
    }
    // Another request without parking, whether it was there already or came while the
    // connection lingered: a busy connection keeps its TLS buffers (net::stream).
    if (again) k.down.keep_buffers();
  }
}

// The connection's end: close_notify inside a tunnel, then the close.
asio::awaitable<void> end_session(connection& k) {
  if (k.in_tunnel && k.down.is_tls() && k.down.socket().is_open()) {
    k.down.expires_after(seconds(1));
    co_await k.down.async_shutdown(use_tuple);
  }
  error_code ignored;
  if (k.down.socket().is_open()) k.down.socket().shutdown(tcp::socket::shutdown_send, ignored);
  k.down.close();
}

// One wake-up of the connection: the requests it brought (when the wait succeeded), or its end.
asio::awaitable<next_step> wake(connection& k, error_code waited) {
  co_await asio::this_coro::throw_if_cancelled(false);
  if (k.refused) {
    co_await refuse_client(k.c, k.down);
  } else if (!waited) {
    const next_step n = co_await serve_some(k);
    if (n == next_step::park) co_return n;
  }
  co_await end_session(k);
  co_return next_step::end;
}

void park(std::shared_ptr<connection> k);

// Runs the connection's coroutine for one wake-up, then parks or ends the connection. A
// drain's cancellation reaches the coroutine as it reaches any of its operations.
void serve_next(std::shared_ptr<connection> k, error_code waited) {
  auto* raw = k.get();
  auto slot = raw->ctl->cancel.slot();
  asio::co_spawn(
      raw->down.get_executor(), wake(*raw, waited),
      asio::bind_cancellation_slot(slot, [k = std::move(k)](std::exception_ptr e, next_step n) mutable {
        if (!e && n == next_step::park) {
          park(std::move(k));
          return;
        }
        const auto ctl = k->ctl;
        k->down.close();
        k.reset();
        ctl->ended(e);
      }));
}

// Idle until the next request's first byte (the keep-alive timeout): the connection is only
// this object, its socket's wait, its place among the parked connections and its SSL, with its
// read buffer released.
void park(std::shared_ptr<connection> k) {
  auto& down = k->down;
  if (k->c.svc.draining.load()) {  // the drain may have passed it by while it lingered
    serve_next(std::move(k), asio::error::operation_aborted);
    return;
  }
  if (down.has_buffered_input()) {  // a record OpenSSL holds: the socket would not say so
    serve_next(std::move(k), {});
    return;
  }
  const auto ex = down.get_executor();
  if (k->parked == nullptr) k->parked = &parked_connections::of(ex);
  k->ctl->waiting = &down.socket();
  down.expires_never();
  down.release_timers();
  down.release_buffers();
  k->buf.shrink_to_fit();
  k->c.caller.reset();  // its next request reads its Authorization again
  k->parked->add(*k);
  // The coroutine that served the connection has ended, but the cancellation handler it left in
  // the session's slot keeps its memory until the next one replaces it: freed once the
  // coroutine's frame is gone, if the connection is still parked then.
  asio::post(ex, [k] {
    if (k->linked) k->ctl->cancel.slot().clear();
  });
  down.socket().async_wait(tcp::socket::wait_read, [k = std::move(k)](error_code ec) mutable {
    k->parked->remove(*k);
    k->ctl->waiting = nullptr;
    serve_next(std::move(k), ec);
  });
}

}  // namespace
}  // namespace detail

void start_session(services& svc, asio::ip::tcp::socket sock, std::uint64_t conn_id,
                   std::shared_ptr<session_control> ctl) {
  const auto ex = sock.get_executor();
  // The acceptor runs on its own loop; the session belongs to its socket's worker.
  asio::post(ex, [&svc, sock = std::move(sock), conn_id, ctl = std::move(ctl)]() mutable {
    auto k = std::make_shared<detail::connection>(svc, std::move(sock), conn_id, std::move(ctl));
    const auto& clients = k->c.rt->clients;
    if (!clients.empty() && !clients.contains(k->c.peer)) {
      k->refused = true;
      detail::serve_next(std::move(k), {});
      return;
    }
    svc.metrics.connections_proxy.get().inc();
    k->idle_until = steady_clock::now() + milliseconds(k->c.rt->cfg.client.idle_timeout_ms);
    detail::park(std::move(k));
  });
}

}  // namespace okta_sidecar::proxy
