// One client connection: the request loop, CONNECT (intercept or blind tunnel), and the
// per-request pipeline classify -> breaker -> admission -> upstream -> relay, with the
// rate-limit and failure retries. Downstream = the app, upstream = Okta.
#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <optional>
#include <random>
#include <tuple>

#include "okta_sidecar/auth/diagnosis.hpp"
#include "okta_sidecar/auth/sha256.hpp"
#include "okta_sidecar/auth/token_info.hpp"
#include "okta_sidecar/cache/document_cache.hpp"
#include "okta_sidecar/http/hop_by_hop.hpp"
#include "okta_sidecar/http/local_reply.hpp"
#include "okta_sidecar/http/redact.hpp"
#include "okta_sidecar/http/request_validator.hpp"
#include "okta_sidecar/http/target.hpp"
#include "okta_sidecar/http/trace_context.hpp"
#include "okta_sidecar/net/stream.hpp"
#include "okta_sidecar/proxy/server.hpp"
#include "okta_sidecar/ratelimit/coalesce_key.hpp"
#include "okta_sidecar/ratelimit/header_dialect.hpp"
#include "okta_sidecar/ratelimit/path.hpp"
#include "okta_sidecar/resilience/attempt_machine.hpp"
#include "okta_sidecar/tls/intercept_context.hpp"

namespace okta_sidecar::proxy {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t relay_chunk = 16 * 1024;
constexpr std::size_t small_body_limit = 256 * 1024;  // 401/403/429 bodies we read whole
constexpr std::size_t max_chunk_extension_bytes = 1024;

std::vector<http::header_view> views(const bhttp::fields& f) {
  std::vector<http::header_view> out;
  out.reserve(16);
  for (const auto& h : f) out.emplace_back(h.name_string(), h.value());
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return out;
}

std::int64_t epoch_now(const clock_source& c) {
  return std::chrono::duration_cast<seconds>(c.wall_now().time_since_epoch()).count();
}

std::string random_error_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string id = "sidecar";
  for (int i = 0; i < 18; ++i) id += alphabet[rng() % (sizeof(alphabet) - 1)];
  return id;
}

double random01() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// What one request did, for the access log and metrics.
struct request_record {
  std::uint64_t id = 0;
  std::string method;
  std::string host;
  std::string path;  // redacted target
  std::string bucket = "-";
  int status = 0;
  int upstream_status = 0;
  std::string local_reason;
  std::string error;  // what went wrong after the response began (truncated body...)
  std::uint64_t bytes_out = 0;
  std::string okta_request_id;
  std::uint32_t attempts = 0;
  double queue_wait_ms = 0;
  time_point started{};
  std::string trace_id;  // from the request's traceparent, to join the app's traces
  // The (host, bucket) series, resolved once host and bucket are final (identify(), or at the end).
  metrics::bucket_series* series = nullptr;
};

struct conn_ctx {
  services& svc;
  std::uint64_t id;
  session_control& ctl;
  std::string peer;
  std::shared_ptr<const runtime> rt;
  std::string user{};  // the proxy-auth user, once authenticated (also inside its CONNECT tunnel)
  // Set by an intercepted CONNECT: where the requests on this connection go from then on.
  std::optional<upstream::origin> tunnel{};
};

// Sends one of the sidecar's own answers (docs/architecture.md "responses the sidecar itself produces").
asio::awaitable<bool> send_local(conn_ctx& c, net::stream& s, http::local_error err, std::string_view detail,
                                 request_record& rec, bool keep_alive, unsigned version = 11,
                                 std::optional<std::int64_t> retry_after = {},
                                 const http::rate_limit_echo& echo = {}, std::string_view diagnosis = {}) {
  // A local 429 echoes Okta's X-Rate-Limit-Reset, which is on Okta's clock; the SDKs wait
  // reset - Date + 1 s (docs/okta-behaviour.md), so its Date must be on Okta's clock too, or a skewed
  // machine clock would make every SDK wait the skew longer (or not at all).
  const std::int64_t now_epoch = err == http::local_error::rate_limited
                                     ? c.svc.okta_clock.now_epoch(c.svc.clock.wall_now())
                                     : epoch_now(c.svc.clock);
  auto reply = http::make_local_reply(err, random_error_id(), detail, now_epoch, retry_after, echo);
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(reply.status),
                                          version == 10 ? 10u : 11u};
  for (auto& [k, v] : reply.headers) res.set(k, v);
  if (!diagnosis.empty()) res.set("X-Okta-Sidecar-Diagnosis", diagnosis);
  res.body() = std::move(reply.body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  // RFC 9110 §9.3.2: a response to HEAD has the GET's header fields and no content; a body here
  // would be read by a pipelining client as the start of its next response.
  if (rec.method == "HEAD") res.body().clear();
  rec.status = reply.status;
  rec.local_reason = reply.reason;
  rec.bytes_out += res.body().size();
  c.svc.metrics.local_reply(err).inc();
  s.expires_after(milliseconds(c.rt->cfg.client.idle_timeout_ms));
  auto [ec, n] = co_await bhttp::async_write(s, res, use_tuple);
  co_return !ec && keep_alive;
}

// The request's series: looked up once, when its host and bucket are known.
metrics::bucket_series& series_of(conn_ctx& c, request_record& r) {
  if (!r.series) r.series = &c.svc.metrics.per_bucket.of(r.host, r.bucket);
  return *r.series;
}

void access_log(conn_ctx& c, request_record& r) {
  const auto ms = std::chrono::duration<double, std::milli>(c.svc.clock.now() - r.started).count();
  series_of(c, r).requests(r.status).inc();
  if (!c.svc.log.enabled(spdlog::level::info)) return;
  // log.access_sample thins out the lines of requests that went well; anything the sidecar
  // answered itself, any status from 400 up and unanswered requests are always written.
  const bool failed = r.status == 0 || r.status >= 400 || !r.local_reason.empty();
  const double sample = c.rt->cfg.log.access_sample;
  if (!failed && sample < 1.0 && !(sample > 0.0 && random01() < sample)) return;
  logging::event e("access");
  e.with("conn", c.id)
      .with("req", r.id)
      .with("peer", c.peer)
      .with("method", r.method)
      .with("host", r.host)
      .with("path", r.path)
      .with("bucket", r.bucket)
      .with("status", r.status)
      .with("bytes", r.bytes_out)
      .with("duration_ms", std::round(ms * 1000) / 1000)
      .with("attempts", r.attempts);
  if (!c.user.empty()) e.with("user", c.user);
  if (!r.trace_id.empty()) e.with("trace_id", r.trace_id);
  if (r.upstream_status) e.with("upstream_status", r.upstream_status);
  if (!r.local_reason.empty()) e.with("sidecar_error", r.local_reason);
  if (!r.error.empty()) e.with("error", r.error);
  if (!r.okta_request_id.empty()) e.with("okta_request_id", r.okta_request_id);
  if (r.queue_wait_ms > 0) e.with("queue_wait_ms", std::round(r.queue_wait_ms * 1000) / 1000);
  c.svc.log.info(e);
}

// One request from its head to its end (Envoy's ActiveStream): however it ends, a local reply,
// an upstream response, the client gone or an exception, its completion writes the access-log
// line and counts okta_sidecar_requests_total, once. A connection that closes before a head
// arrives has no request, and no line.
class request_scope {
 public:
  explicit request_scope(conn_ctx& c) : c_(c) {}
  request_scope(const request_scope&) = delete;
  request_scope& operator=(const request_scope&) = delete;
  ~request_scope() {
    try {
      finish();
    } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw; a lost line is all
    }
  }

  // A head was read (or refused): from here on the request exists and will be logged.
  request_record& begin() {
    if (!begun_) {
      begun_ = true;
      rec_.started = c_.svc.clock.now();
      rec_.id = c_.svc.next_request_id++;
    }
    return rec_;
  }
  request_record& rec() { return rec_; }
  // Ends the request now rather than at the end of the scope (a CONNECT's line goes out before
  // the lines of the requests inside its tunnel); later calls do nothing.
  void finish() {
    if (!begun_ || finished_) return;
    finished_ = true;
    access_log(c_, rec_);
  }

 private:
  conn_ctx& c_;
  request_record rec_;
  bool begun_ = false;
  bool finished_ = false;
};

// How much the next read may add to a client buffer: flat_buffer::prepare throws past the
// buffer's bound (which keeps Beast from ever meeting a field it cannot store).
std::size_t read_room(const beast::flat_buffer& b) {
  return std::min<std::size_t>(4096, b.max_size() - b.size());
}

// Resolves when the client closes its side (EOF or error), so a queued request can leave the
// queue at no upstream cost. Pending data (a pipelined request, a TLS record) ends the watch:
// we can no longer tell, and the request simply stays queued.
asio::awaitable<void> watch_client_gone(tcp::socket& sock) {
  auto [ec] = co_await sock.async_wait(tcp::socket::wait_read, use_tuple);
  if (ec) co_return;
  char byte;
  const ssize_t n = ::recv(sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) co_return;
  const auto forever_ex = co_await asio::this_coro::executor;
  asio::steady_timer forever(forever_ex, time_point::max());
  co_await forever.async_wait(use_tuple);
}

// Waits for admission while watching the client; `cancelled` means the client left.
asio::awaitable<rate_gate::result> admit_watching(conn_ctx&, net::stream& down,
                                                  asio::awaitable<rate_gate::result> op) {
  auto r = co_await (std::move(op) || watch_client_gone(down.socket()));
  if (r.index() == 0) co_return std::get<0>(r);
  co_return rate_gate::result{rate_gate::outcome::cancelled, 0, {}};
}

// Holds an admission ticket and a breaker probe; whatever path leaves the request releases them.
struct request_guard {
  services& svc;
  std::string host;
  ratelimit::ticket ticket = 0;
  bool probe = false;
  ~request_guard() {
    if (ticket) svc.gate.cancel(ticket);
    if (probe) svc.breakers.release_probe(host, svc.clock.now());
  }
};

// Returns a pooled connection (or closes it) when the request is done with it.
struct connection_lease {
  upstream::connection_pool& pool;
  upstream::origin origin;
  std::unique_ptr<upstream::connection> conn;
  bool reusable = false;
  void give_back() {
    if (conn) pool.release(origin, std::move(conn), reusable);
    conn.reset();
  }
  ~connection_lease() { give_back(); }
};

enum class send_status {
  ok,
  write_failed_before_body,
  write_failed,
  client_body_error,
  client_gone,  // the client went away while we relayed an interim response
  response_timeout,
  response_failed,
  protocol_error,  // 101, or more interim responses than any real server sends
};

struct head_result {
  send_status status = send_status::ok;
  boost::system::error_code ec;
  bool request_incomplete = false;  // the upstream answered before our request was all sent
};

// The upstream request: the head, and the body as far as it was read. A body up to
// client.max_buffered_body_bytes is read (and so validated) whole before anything goes
// upstream, so it can be replayed; only the rest of a larger one streams from the client.
struct outgoing {
  bhttp::request<bhttp::string_body> head_and_body;  // target, fields, the body read so far
  bool streamed = false;
  bhttp::request_parser<bhttp::buffer_body>* stream_parser = nullptr;
  bool client_body_failed = false;
  time_point body_deadline = time_point::max();  // client.request_timeout_ms covers the upload too
};

// The parser of the upstream's response head; a fresh one for each interim (1xx) response.
struct response_head {
  std::uint32_t header_limit = 0;
  bool head_request = false;
  std::optional<bhttp::response_parser<bhttp::empty_body>> parser;

  bhttp::response_parser<bhttp::empty_body>& fresh() {
    parser.emplace();
    parser->header_limit(header_limit);
    // The body is streamed, never held: without this, Beast's default 8 MiB limit rejects a
    // larger Content-Length already while the head is parsed (a 502 for a 10 MiB body).
    parser->body_limit(boost::none);
    if (head_request) parser->skip(true);
    return *parser;
  }
};

// A message head as one contiguous string, the way it goes on the wire. Beast's serializer
// hands the kernel one iovec per field piece, and a TLS stream gathers only a bounded number of
// small pieces into one record: copying a few hundred bytes is cheaper than either.
void append_head(std::string& out, const bhttp::request_header<>& h) {
  out += h.method_string();
  out += ' ';
  out += h.target();
  out += h.version() == 10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n";
  for (const auto& f : h) {
    out += f.name_string();
    out += ": ";
    out += f.value();
    out += "\r\n";
  }
  out += "\r\n";
}

void append_head(std::string& out, const bhttp::response_header<>& h) {
  out += h.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  out += std::to_string(h.result_int());
  out += ' ';
  const auto reason = h.reason();
  out += reason.empty() ? bhttp::obsolete_reason(h.result()) : reason;
  out += "\r\n";
  for (const auto& f : h) {
    out += f.name_string();
    out += ": ";
    out += f.value();
    out += "\r\n";
  }
  out += "\r\n";
}

// Removes hop-by-hop fields (RFC 9110 §7.6.1) from a message about to be forwarded.
void strip_hop_by_hop(bhttp::fields& f) {
  if (f.find(bhttp::field::connection) == f.end()) {
    // The common case, without allocating: only the fixed names can be present.
    for (auto it = f.begin(); it != f.end();) {
      it = http::is_fixed_hop_by_hop(it->name_string()) ? f.erase(it) : std::next(it);
    }
    return;
  }
  for (const auto& name : http::hop_by_hop_names(views(f))) f.erase(name);
}

// Writes a streamed request: the head, the part of the body already read, then the rest as it
// arrives from the client, re-framed. Its own coroutine so that the relay buffer is allocated
// only while a body is being streamed, not for every request waiting for its response head.
asio::awaitable<head_result> send_streamed(conn_ctx& c, net::stream& down, beast::flat_buffer& down_buf,
                                           upstream::connection& conn, outgoing& out) {
  auto& up = conn.stream();
  const auto idle = milliseconds(c.rt->cfg.upstream.idle_timeout_ms);
  head_result r;
  // RFC 9112 §7: we re-frame the body; the message we send shares the parser's buffer.
  bhttp::request<bhttp::buffer_body> msg;
  msg.base() = out.head_and_body.base();
  bhttp::request_serializer<bhttp::buffer_body> sr{msg};
  up.expires_after(idle);
  auto [hec, hn] = co_await bhttp::async_write_header(up, sr, use_tuple);
  if (hec) {
    r.status = send_status::write_failed_before_body;
    r.ec = hec;
    co_return r;
  }
  auto& p = *out.stream_parser;
  auto& prefix = out.head_and_body.body();
  const bool peek_for_answer = !conn.is_tls() || conn.requests() > 1;
  std::array<char, relay_chunk> chunk;
  for (bool first = true; !p.is_done(); first = false) {
    std::size_t piece = 0;
    const char* data = chunk.data();
    if (first && !prefix.empty()) {
      data = prefix.data();
      piece = prefix.size();
    } else {
      p.get().body().data = chunk.data();
      p.get().body().size = chunk.size();
      down.expires_at(http::body_read_deadline(c.svc.clock.now(), idle, out.body_deadline));
      auto [rec, rn] = co_await bhttp::async_read(down, down_buf, p, use_tuple);
      if (rec == bhttp::error::need_buffer) rec = {};
      if (rec) {
        out.client_body_failed = true;
        r.status = send_status::client_body_error;
        r.ec = rec;
        co_return r;
      }
      piece = chunk.size() - p.get().body().size;
    }
    // An upstream that answers before it has read the body (RFC 9112 §9.3) stops reading it:
    // look for its answer between pieces instead of blocking on a write that never drains. On
    // a TLS connection's first request the raw bytes may be TLS 1.3 session tickets, not an
    // answer, so there the check waits until the connection has served a response.
    if (peek_for_answer && up.has_unread_input()) {
      r.request_incomplete = true;
      co_return r;
    }
    msg.body().data = const_cast<char*>(data);
    msg.body().size = piece;
    msg.body().more = !p.is_done();
    up.expires_after(idle);
    auto [wec, wn] = co_await bhttp::async_write(up, sr, use_tuple);
    if (wec == bhttp::error::need_buffer) wec = {};
    if (wec) {
      r.status = send_status::write_failed;
      r.ec = wec;
      co_return r;
    }
  }
  if (!sr.is_done()) {
    msg.body().data = nullptr;
    msg.body().size = 0;
    msg.body().more = false;
    auto [fec, fn] = co_await bhttp::async_write(up, sr, use_tuple);
    if (fec && fec != bhttp::error::need_buffer) {
      r.status = send_status::write_failed;
      r.ec = fec;
      co_return r;
    }
  }
  co_return r;
}

// Interim responses that may precede a final one; more is a broken or hostile upstream.
constexpr int max_interim_responses = 8;
// How long to look for an upstream's answer after our request could not be written whole.
constexpr auto early_response_grace = std::chrono::seconds(1);

// Writes the request (relaying a streamed body from the client) and reads the final response
// head, relaying interim ones to the client (RFC 9110 §15.2).
asio::awaitable<head_result> send_and_read_head(conn_ctx& c, net::stream& down, beast::flat_buffer& down_buf,
                                                upstream::connection& conn, outgoing& out, response_head& rh,
                                                time_point header_deadline, unsigned client_version) {
  auto& up = conn.stream();
  const auto idle = milliseconds(c.rt->cfg.upstream.idle_timeout_ms);
  head_result r;
  if (!out.streamed) {
    // Framed by Content-Length (or bodiless): the message goes out exactly as it is held.
    std::string wire;
    wire.reserve(512 + out.head_and_body.body().size());
    append_head(wire, out.head_and_body.base());
    wire += out.head_and_body.body();
    up.expires_after(idle);
    auto [ec, n] = co_await asio::async_write(up, asio::buffer(wire), use_tuple);
    if (ec) {
      r.status = n == 0 ? send_status::write_failed_before_body : send_status::write_failed;
      r.ec = ec;
    }
  } else {
    r = co_await send_streamed(c, down, down_buf, conn, out);
  }
  if (r.status == send_status::client_body_error) co_return r;
  if (r.status != send_status::ok) {
    // Part of the request went out: the upstream may have answered early and closed (a 413,
    // say). Its answer is worth more than a guess; without one the failure stands.
    if (r.status == send_status::write_failed_before_body) co_return r;
    header_deadline = std::min(header_deadline, steady_clock::now() + early_response_grace);
  }
  const head_result write_result = r;
  up.expires_at(header_deadline);
  for (int interim = 0;; ++interim) {
    auto& rp = rh.fresh();
    auto [ec, n] = co_await bhttp::async_read_header(up, conn.buffer(), rp, use_tuple);
    if (ec) {
      if (write_result.status != send_status::ok) co_return write_result;
      r.status = ec == beast::error::timeout ? send_status::response_timeout : send_status::response_failed;
      r.ec = ec;
      co_return r;
    }
    if (write_result.status != send_status::ok) {
      r.status = send_status::ok;
      r.request_incomplete = true;
    }
    const unsigned status = rp.get().result_int();
    if (status >= 200) co_return r;
    // We never forward Upgrade, so a 101 is a protocol violation, as is an endless 1xx stream.
    if (status == 101 || interim == max_interim_responses) {
      r.status = send_status::protocol_error;
      co_return r;
    }
    // Interim responses go to HTTP/1.1 clients only (RFC 9110 §15.2). A 100 Continue answers
    // the expectation we removed (the sidecar answers the client's Expect itself): ours to drop.
    if (status == 100 || client_version != 11) continue;
    auto& interim_head = rp.get();
    strip_hop_by_hop(interim_head);
    interim_head.version(11);
    std::string wire;
    append_head(wire, interim_head.base());
    down.expires_after(idle);
    auto [wec, wn] = co_await asio::async_write(down, asio::buffer(wire), use_tuple);
    up.expires_at(header_deadline);
    if (wec) {
      r.status = send_status::client_gone;
      co_return r;
    }
  }
}

// Whether a connection whose response was read to its end may serve another request: the
// response said keep-alive and was framed by length (not by the close), and not one byte
// beyond it is buffered. A byte the upstream sent unasked would become the next client's
// response (RFC 9112 §9.3.2: a client must not reuse a connection it cannot keep in step).
template <class Parser>
bool reusable_after(conn_ctx& c, const Parser& p, upstream::connection& conn) {
  if (!p.is_done() || !p.keep_alive()) return false;
  if (conn.buffer().size() != 0) {
    c.svc.metrics.discard_unread_bytes.get().inc();
    return false;
  }
  return true;
}

// Reads a whole (small) response body: 429s we absorb and 401/403s we diagnose.
asio::awaitable<std::optional<bhttp::response<bhttp::string_body>>> read_small_body(
    conn_ctx& c, upstream::connection& conn, bhttp::response_parser<bhttp::empty_body>& rp, bool& reusable) {
  auto& up = conn.stream();
  bhttp::response_parser<bhttp::string_body> p{std::move(rp)};
  p.body_limit(small_body_limit);
  up.expires_after(milliseconds(c.rt->cfg.upstream.idle_timeout_ms));
  auto [ec, n] = co_await bhttp::async_read(up, conn.buffer(), p, use_tuple);
  reusable = false;
  if (ec) co_return std::nullopt;
  reusable = reusable_after(c, p, conn);
  co_return p.release();
}

bool status_has_body(unsigned status) { return !(status / 100 == 1 || status == 204 || status == 304); }

enum class relay_status { ok, upstream_failed, client_failed };

// Streams the response to the client as it arrives (RFC 9112 framing re-applied by us).
asio::awaitable<relay_status> relay_response(conn_ctx& c, net::stream& down, upstream::connection& conn,
                                             bhttp::response_parser<bhttp::empty_body>& rp, bool head_request,
                                             bool keep_alive, unsigned version, request_record& rec,
                                             bool& upstream_reusable, std::optional<std::string>& capture,
                                             std::size_t capture_limit) {
  auto& up = conn.stream();
  const auto idle = milliseconds(c.rt->cfg.upstream.idle_timeout_ms);
  bhttp::response_parser<bhttp::buffer_body> p{std::move(rp)};
  p.body_limit(boost::none);
  auto& res = p.get();
  const bool chunked_in = res.chunked();
  const bool has_length = p.content_length().has_value();
  const bool body = !head_request && status_has_body(res.result_int());
  strip_hop_by_hop(res);
  res.version(version == 10 ? 10 : 11);
  if (body && (chunked_in || !has_length)) {
    if (version == 11) {
      res.chunked(true);
    } else {
      keep_alive = false;  // HTTP/1.0 client: the end of the body is the close
    }
  }
  res.keep_alive(keep_alive);
  // Content-Length framing (or no body) passes through unchanged: the head goes out as one flat
  // buffer with the first piece of the body, later pieces as they arrive. Otherwise Beast's
  // serializer re-frames the body (chunked, or close-delimited for HTTP/1.0), also sending the
  // head with the first piece. Either way nothing reaches the client before the first piece
  // of the body did reach us, so a response that fails at once can still be answered 502.
  const bool passthrough = !body || (has_length && !chunked_in);
  std::string wire;
  std::optional<bhttp::response_serializer<bhttp::buffer_body>> sr;
  if (passthrough) {
    append_head(wire, res.base());
  } else {
    sr.emplace(res);
  }
  std::array<char, relay_chunk> chunk;
  int final_writes = 0;  // a finished parser needs one empty write to end the serializer
  for (bool first = true;; first = false) {
    const bool reading = body && !p.is_done();
    std::size_t piece = 0;
    if (reading) {
      res.body().data = chunk.data();
      res.body().size = chunk.size();
      up.expires_after(idle);
      auto [rec_ec, rn] = co_await bhttp::async_read(up, conn.buffer(), p, use_tuple);
      if (rec_ec == bhttp::error::need_buffer) rec_ec = {};
      if (rec_ec) {
        // A body shorter than its framing, or a TLS connection closed without close_notify
        // (stream_truncated): the client must not take what it got for the whole body.
        auto& timeouts = rec_ec == beast::error::timeout ? c.svc.metrics.timeout_upstream_body_idle
                                                         : c.svc.metrics.timeout_upstream_body_error;
        timeouts.get().inc();
        rec.error = rec_ec == beast::error::timeout ? "upstream_body_timeout" : "upstream_body_truncated";
        co_return relay_status::upstream_failed;
      }
      piece = chunk.size() - res.body().size;
      // A copy for coalesced followers and the cache, given up once it outgrows the limit.
      if (capture && capture->size() + piece > capture_limit) capture.reset();
      if (capture) capture->append(chunk.data(), piece);
    }
    down.expires_after(idle);
    boost::system::error_code wec;
    std::size_t wn = 0;
    if (!passthrough) {
      res.body().data = reading ? chunk.data() : nullptr;
      res.body().size = piece;
      res.body().more = !p.is_done();
      std::tie(wec, wn) = co_await bhttp::async_write(down, *sr, use_tuple);
      if (wec == bhttp::error::need_buffer) wec = {};
    } else if (first) {
      wire.append(chunk.data(), piece);
      std::tie(wec, wn) = co_await asio::async_write(down, asio::buffer(wire), use_tuple);
    } else {
      std::tie(wec, wn) = co_await asio::async_write(down, asio::buffer(chunk.data(), piece), use_tuple);
    }
    rec.bytes_out += wn;
    if (wec) co_return relay_status::client_failed;
    const bool more =
        passthrough ? body && !p.is_done() : !p.is_done() || (!sr->is_done() && ++final_writes < 2);
    if (!more) break;
  }
  upstream_reusable = reusable_after(c, p, conn);
  c.svc.metrics.bytes_downstream.get().inc(static_cast<double>(rec.bytes_out));
  co_return relay_status::ok;
}

asio::awaitable<void> send_buffered(conn_ctx& c, net::stream& down, bhttp::response<bhttp::string_body>& res,
                                    bool head_request, bool keep_alive, unsigned version, request_record& rec,
                                    bool& ok) {
  strip_hop_by_hop(res);
  res.version(version == 10 ? 10 : 11);
  res.keep_alive(keep_alive);
  // A HEAD response keeps Okta's Content-Length: it describes the body a GET would get.
  if (!head_request) res.content_length(res.body().size());
  down.expires_after(milliseconds(c.rt->cfg.client.idle_timeout_ms));
  // Head and body in one buffer, one write (see append_head): Beast's serializer cost more
  // than the copy for the small bodies that are read whole.
  std::string wire;
  wire.reserve(512 + (head_request ? 0 : res.body().size()));
  append_head(wire, res.base());
  if (!head_request) wire += res.body();
  auto [ec, n] = co_await asio::async_write(down, asio::buffer(wire), use_tuple);
  rec.bytes_out += head_request ? 0 : res.body().size();
  ok = !ec;
}

// A response's end-to-end fields, as coalesced followers and the cache get them. The framing is
// re-applied when they are sent; a HEAD answer keeps its Content-Length (it describes the GET).
shared_response shareable(int status, const bhttp::fields& f, bool head_request) {
  shared_response out;
  out.status = status;
  for (const auto& field : f) {
    const auto name = field.name();
    if (http::is_fixed_hop_by_hop(field.name_string()) || name == bhttp::field::transfer_encoding ||
        (name == bhttp::field::content_length && !head_request)) {
      continue;
    }
    out.fields.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  return out;
}

// Answers from a shared response: a coalesced leader's (`how` = "coalesced") or the cache's
// ("hit", or "stale" while Okta cannot answer), with an Age header for cached ones.
asio::awaitable<bool> send_shared(conn_ctx& c, net::stream& down, const shared_response& sr,
                                  std::optional<duration> age, std::string_view how, bool head_request,
                                  bool keep_alive, unsigned version, request_record& rec) {
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(sr.status), 11};
  for (const auto& [name, value] : sr.fields) res.insert(name, value);
  if (age) {
    res.set(bhttp::field::age,
            std::to_string(std::chrono::duration_cast<std::chrono::seconds>(*age).count()));
  }
  res.set("X-Okta-Sidecar-Cache", how);
  if (!head_request) {
    res.body() = sr.body;
  } else if (!sr.body.empty()) {
    res.content_length(sr.body.size());
  }
  rec.status = sr.status;
  bool ok = false;
  co_await send_buffered(c, down, res, head_request, keep_alive, version, rec, ok);
  co_return ok&& keep_alive;
}

// The leader's side of a coalesced flight: followers are told the outcome on every way out of
// forward(), a shared response or "go alone" (nullptr).
struct flight_guard {
  shared_reads& reads;
  std::shared_ptr<shared_reads::flight> f;
  flight_guard(shared_reads& r, std::shared_ptr<shared_reads::flight> fl) : reads(r), f(std::move(fl)) {}
  flight_guard(const flight_guard&) = delete;
  flight_guard& operator=(const flight_guard&) = delete;
  ~flight_guard() {
    if (f) reads.finish(f, nullptr);
  }
  void land(std::shared_ptr<const shared_response> r) {
    if (f) reads.finish(std::exchange(f, nullptr), std::move(r));
  }
};

ratelimit::observation observe(conn_ctx& c, const std::string& host, const bhttp::fields& f) {
  auto v = views(f);
  std::vector<ratelimit::header_view> rv(v.begin(), v.end());
  const auto wall = c.svc.clock.wall_now();
  auto obs =
      ratelimit::parse_rate_limit_headers(rv, c.svc.clock.now(), wall, c.svc.okta_clock.offset_bound(host));
  if (obs.server_date_epoch) c.svc.okta_clock.observe(host, *obs.server_date_epoch, wall);
  return obs;
}

std::optional<std::uint32_t> parse_max_wait_header(std::string_view v) {
  std::uint32_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size()) return std::nullopt;
  return out;
}

// Where a request goes and how it may be treated.
struct destination {
  upstream::origin origin;
  std::string path_and_query;
  bool inspect = true;  // false for tunnel_hosts reached by absolute-form: forwarded as is
};

// A stage's answer: nullopt, the request goes on (or, from an attempt, is tried again); a value,
// the request was answered (or its client is gone), and whether the client connection stays.
using stage_result = std::optional<bool>;

// The client's request as its head parser holds it.
using client_request = bhttp::request<bhttp::empty_body>;

std::int64_t retry_after_s(duration d) {
  return std::max<std::int64_t>(1, (std::chrono::duration_cast<milliseconds>(d).count() + 999) / 1000);
}

// The shared retry budget, as the attempt machine asks for it.
resilience::retry_allowance retry_budget_of(services& svc) {
  return [&svc](time_point now) { return svc.breakers.try_spend_retry(now); };
}

// Waits out a retry's backoff.
asio::awaitable<void> sleep_for(duration d) {
  const auto t_ex = co_await asio::this_coro::executor;
  asio::steady_timer t(t_ex, d);
  co_await t.async_wait(use_tuple);
}

// What the stages of one request share. It lives in forward()'s frame; each stage takes it by
// reference (Envoy's ActiveStream, without the filter chain).
struct request_ctx {
  conn_ctx& c;
  net::stream& down;
  beast::flat_buffer& buf;
  const destination& dest;
  request_record& rec;
  services& svc;
  const runtime& rt;
  unsigned version = 11;
  bool keep_alive = false;
  std::string method;
  bool head_request = false;
  time_point start{};
  time_point request_deadline{};
  // Which bucket it draws on and who asks (a hash of the credential, never the credential).
  std::string npath;
  ratelimit::classification cls;
  ratelimit::bucket_key key;
  std::string authz;
  std::optional<auth::token_info> token;
  std::optional<std::uint32_t> client_max_wait;
  bool client_sent_retry_for = false;
  std::uint32_t client_retry_count = 0;
  // The budget savers: a public document's cache key, and the coalesced flight this leads.
  std::string cache_key;
  flight_guard flight;
  // The upstream request, and the parser of a body still (partly) in the client's stream.
  outgoing out;
  std::optional<bhttp::request_parser<bhttp::buffer_body>> body_parser;
  bool expect_continue = false;
  bool continue_sent = false;
  // Across attempts (the retry bookkeeping is the attempt_machine's).
  std::string first_okta_request_id;

  request_ctx(conn_ctx& cc, net::stream& d, beast::flat_buffer& b, const destination& de, request_record& r)
      : c(cc), down(d), buf(b), dest(de), rec(r), svc(cc.svc), rt(*cc.rt), flight(cc.svc.reads, nullptr) {}

  // The request's (host, bucket) series, resolved in identify().
  metrics::bucket_series& stats() { return *rec.series; }

  // A local answer; `keep` says whether the client connection may stay open.
  asio::awaitable<bool> reply(http::local_error err, std::string_view detail, bool keep,
                              std::optional<std::int64_t> retry_after = {},
                              const http::rate_limit_echo& echo = {}, std::string_view diagnosis = {}) {
    co_return co_await send_local(c, down, err, detail, rec, keep, version, retry_after, echo, diagnosis);
  }
  // The client connection is in step after a local answer unless part of its body is unread.
  bool keep_after_local() const { return keep_alive && !out.streamed; }

  // RFC 9110 §10.1.1: the client asked before sending its body; answered once, when the body
  // is wanted.
  asio::awaitable<bool> send_continue() {
    if (!expect_continue || continue_sent) co_return true;
    continue_sent = true;
    static constexpr std::string_view line = "HTTP/1.1 100 Continue\r\n\r\n";
    auto [ec, n] = co_await asio::async_write(down, asio::buffer(line.data(), line.size()), use_tuple);
    co_return !ec;
  }
};

// Reads from the client's head all that later stages need: its parser moves into the body's.
void identify(request_ctx& r, const client_request& req) {
  r.version = req.version();
  r.keep_alive = req.keep_alive();
  r.method = std::string(req.method_string());
  r.head_request = req.method() == bhttp::verb::head;
  r.start = r.svc.clock.now();
  r.request_deadline = r.start + milliseconds(r.rt.cfg.client.request_timeout_ms);
  r.npath = ratelimit::normalize_path(r.dest.path_and_query);
  if (r.dest.inspect) {
    r.cls = r.rt.classifier.classify(r.method, r.dest.path_and_query);
    // Client-chosen ids beyond the per-host cap share one overflow bucket (issue 14).
    r.cls.bucket = r.svc.gate.bucket_name(r.dest.origin.host, r.cls);
  } else {
    r.cls.group = r.cls.bucket = "tunnel";
    r.cls.rate_limited = false;
  }
  r.rec.bucket = r.cls.bucket;
  r.key = ratelimit::bucket_key{r.dest.origin.host, r.cls.bucket};
  series_of(r.c, r.rec);
  r.authz = std::string(req[bhttp::field::authorization]);
  if (auto h = req.find("X-Okta-Sidecar-Max-Wait-Ms"); h != req.end()) {
    r.client_max_wait = parse_max_wait_header(h->value());
  }
  r.client_sent_retry_for = req.count("X-Okta-Retry-For") > 0;
  if (auto h = req.find("X-Okta-Retry-Count"); h != req.end()) {
    r.client_retry_count = parse_max_wait_header(h->value()).value_or(0);
  }
  if (!r.authz.empty()) r.token = auth::inspect_authorization(r.authz, r.svc.digest);
  r.expect_continue = http::expects_continue(r.version, req[bhttp::field::expect]);
}

// One auth diagnosis, wherever it came from: counted, kept for /status, logged (never the token).
void record_auth_failure(request_ctx& r, int status, const auth::diagnosis& diag,
                         std::string_view metric_reason, bool local) {
  const std::string client_id = r.token ? r.token->cid : "";
  const std::string fingerprint = r.token ? r.token->fingerprint : "";
  r.svc.metrics.auth_failures.with({std::string(metric_reason)}).inc();
  nlohmann::json entry{{"time", epoch_now(r.svc.clock)},
                       {"reason", diag.reason},
                       {"method", r.method},
                       {"path", r.cls.group},
                       {"status", status},
                       {"advice", diag.advice},
                       {"system_log_query", diag.system_log_query},
                       {"client_id", client_id},
                       {"token", fingerprint}};
  if (local) entry["local"] = true;
  r.svc.diagnoses.add(std::move(entry));
  logging::event e("auth failure");
  e.with("conn", r.c.id)
      .with("req", r.rec.id)
      .with("status", status)
      .with("reason", diag.reason)
      .with("advice", diag.advice)
      .with("method", r.method)
      .with("bucket", r.cls.group)
      .with("client_id", client_id)
      .with("token_fingerprint", fingerprint);
  if (local) {
    e.with("local", true);
  } else {
    e.with("okta_request_id", r.rec.okta_request_id);
  }
  r.svc.log.warn(e);
}

// Budget saver (opt-in): a token that is already dead is not worth a request of the budget.
asio::awaitable<stage_result> reject_expired_token(request_ctx& r, bool body_read) {
  if (!r.dest.inspect || !r.rt.cfg.auth.reject_expired_locally || !r.token) co_return std::nullopt;
  const auto okta_now = r.svc.okta_clock.now_epoch(r.svc.clock.wall_now());
  if (!auth::expired_beyond(*r.token, okta_now, 30)) co_return std::nullopt;
  // Same explanation as for Okta's own 401, so /status and the log show the saved requests.
  const auto diag =
      auth::diagnose(401, r.method, r.npath, r.dest.origin.host, *r.token, {}, {}, okta_now, r.rt.scopes);
  record_auth_failure(r, 401, diag, "token_expired", true);
  // The request body, if any, is still unread: keeping the connection would make the next
  // request parse from the body bytes (a desync / smuggling vector), so close instead.
  co_return co_await r.reply(http::local_error::token_expired,
                             "the access token expired before the request was sent",
                             r.keep_alive && body_read, {}, {}, "token_expired");
}

// Budget savers (issue 15): Okta's public documents from the cache, and identical concurrent
// reads sharing one upstream request. Only GET/HEAD without a body.
asio::awaitable<stage_result> shared_read(request_ctx& r, const client_request& req,
                                          const http::validation& valid) {
  const bool plain_read = r.dest.inspect && valid.body.kind == http::framing_kind::none &&
                          (req.method() == bhttp::verb::get || r.head_request);
  if (!plain_read) co_return std::nullopt;
  auto& svc = r.svc;
  const std::string origin_name = r.dest.origin.host + ":" + std::to_string(r.dest.origin.port);
  if (r.rt.cfg.cache.enabled && cache::is_public_document(r.dest.path_and_query)) {
    r.cache_key =
        origin_name + r.dest.path_and_query + "\n" + std::string(req[bhttp::field::accept_encoding]);
    const bool wants_origin = req[bhttp::field::cache_control].find("no-cache") != std::string_view::npos ||
                              req[bhttp::field::pragma].find("no-cache") != std::string_view::npos;
    if (auto hit = svc.reads.fresh(r.cache_key, svc.clock.now()); hit && !wants_origin) {
      co_return co_await send_shared(r.c, r.down, hit->doc, hit->age, "hit", r.head_request, r.keep_alive,
                                     r.version, r.rec);
    }
  }
  if (!r.rt.cfg.rate_limit.coalesce) co_return std::nullopt;
  const std::string cookie(req[bhttp::field::cookie]);
  const std::string credential = r.authz.empty() && cookie.empty()
                                     ? std::string()
                                     : auth::to_hex(auth::sha256_of(r.authz + "\n" + cookie));
  const bool conditional = req.count(bhttp::field::range) || req.count(bhttp::field::if_none_match) ||
                           req.count(bhttp::field::if_modified_since) || req.count(bhttp::field::if_match) ||
                           req.count(bhttp::field::if_unmodified_since) || req.count(bhttp::field::if_range);
  const auto key =
      ratelimit::coalesce_key({r.method, r.dest.origin.host, r.dest.origin.port, r.dest.path_and_query,
                               credential, req[bhttp::field::accept], req[bhttp::field::accept_encoding],
                               req[bhttp::field::accept_language], false, conditional});
  if (!key) co_return std::nullopt;
  auto joined = svc.reads.join(*key);
  if (joined.leader) {
    r.flight.f = std::move(joined.f);
  } else if (auto shared = co_await svc.reads.follow(std::move(joined.f), r.request_deadline)) {
    co_return co_await send_shared(r.c, r.down, *shared, std::nullopt, "coalesced", r.head_request,
                                   r.keep_alive, r.version, r.rec);
  }
  // No shared answer (the leader failed or gave up): this request goes upstream itself.
  co_return std::nullopt;
}

// While Okta errs, times out or its breaker is open: a public document within
// cache.stale_if_error_s of its freshness is better than no signing keys at all.
asio::awaitable<stage_result> serve_stale(request_ctx& r) {
  if (r.cache_key.empty()) co_return std::nullopt;
  auto st = r.svc.reads.stale_for_error(r.cache_key, r.svc.clock.now());
  if (!st) co_return std::nullopt;
  co_return co_await send_shared(r.c, r.down, st->doc, st->age, "stale", r.head_request, r.keep_alive,
                                 r.version, r.rec);
}

// The upstream request's head: the client's fields less hop-by-hop ones and ours, origin-form.
void prepare_upstream_head(request_ctx& r, const client_request& req) {
  auto& h = r.out.head_and_body;
  h.method_string(r.method);
  h.target(r.dest.path_and_query);
  h.version(11);
  for (const auto& f : req) h.insert(f.name_string(), f.value());
  strip_hop_by_hop(h);
  h.erase(bhttp::field::expect);
  h.erase("X-Okta-Sidecar-Max-Wait-Ms");
  if (!h.count(bhttp::field::host)) {
    const auto& o = r.dest.origin;
    h.set(bhttp::field::host, o.port == (o.tls ? 443 : 80) ? o.host : o.host + ":" + std::to_string(o.port));
  }
  h.keep_alive(true);
  r.out.body_deadline = r.request_deadline;
}

// A chunk line or trailer that does not fit the connection's buffer (client.max_header_bytes)
// is as malformed as a bad chunk size: 400.
http::local_error body_error(const boost::system::error_code& ec) {
  return ec == bhttp::error::body_limit ? http::local_error::payload_too_large
                                        : http::local_error::bad_request;
}

// client.request_timeout_ms (or the header timeout between pieces) passed while the body was
// arriving. The stream closes the socket at its deadline, so there is nobody left to answer.
bool body_timed_out(request_ctx& r) {
  r.svc.metrics.timeout_client_body.get().inc();
  r.rec.status = 408;
  r.rec.local_reason = "request_timeout";
  return false;
}

// Request body: a body up to max_buffered_body_bytes is read and validated whole before
// anything goes upstream (a malformed one never reaches Okta) and kept, so the request can be
// replayed after a 429 or a failure; only a larger one streams (and cannot be retried).
asio::awaitable<stage_result> read_body(request_ctx& r, bhttp::request_parser<bhttp::empty_body>& hp,
                                        const http::validation& valid) {
  if (valid.body.kind == http::framing_kind::none) co_return std::nullopt;
  const auto& client = r.rt.cfg.client;
  // Chunk extensions are never forwarded meaning-for-meaning by us (we re-frame), and Beast
  // bounds them only by the body limit: cap them so they cannot carry smuggled bytes or
  // burn CPU (issue 6: limits on chunk extensions).
  auto limit_chunk_ext = [](std::uint64_t, std::string_view extensions, boost::system::error_code& ec) {
    if (extensions.size() > max_chunk_extension_bytes) ec = bhttp::error::bad_chunk_extension;
  };
  auto& p = r.body_parser.emplace(std::move(hp));
  p.body_limit(client.max_body_bytes);
  p.on_chunk_header(limit_chunk_ext);
  const std::uint64_t keep = client.max_buffered_body_bytes;
  const bool known_large = valid.body.kind == http::framing_kind::content_length && valid.body.length > keep;
  // A large upload is invited (100 Continue) only once it has somewhere to go (attempt()).
  if (!known_large) {
    if (!co_await r.send_continue()) co_return false;
    auto& body = r.out.head_and_body.body();
    while (!p.is_done() && body.size() <= keep) {
      const std::size_t used = body.size();
      const std::size_t room = std::min<std::uint64_t>(relay_chunk, keep + 1 - used);
      body.resize(used + room);
      p.get().body().data = body.data() + used;
      p.get().body().size = room;
      r.down.expires_at(http::body_read_deadline(r.svc.clock.now(), milliseconds(client.header_timeout_ms),
                                                 r.out.body_deadline));
      auto [ec, n] = co_await bhttp::async_read(r.down, r.buf, p, use_tuple);
      body.resize(used + room - p.get().body().size);
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec == beast::error::timeout) co_return body_timed_out(r);
      if (ec) co_return co_await r.reply(body_error(ec), "could not read the request body", false);
    }
  }
  if (p.is_done()) {
    // Read and checked whole: sent with a Content-Length, whatever framing it came with
    // (RFC 9112 §7.1.2: a recipient that removes chunked may discard the trailer fields).
    r.out.head_and_body.erase(bhttp::field::transfer_encoding);
    r.out.head_and_body.content_length(r.out.head_and_body.body().size());
  } else {
    r.out.streamed = true;
    r.out.stream_parser = &p;
    if (valid.body.kind == http::framing_kind::chunked) {
      r.out.head_and_body.chunked(true);
    } else {
      r.out.head_and_body.content_length(valid.body.length);
    }
  }
  co_return std::nullopt;
}

// Queue full or predicted wait too long: the contract's local 429 (503 while draining).
asio::awaitable<bool> reject_rate_limited(request_ctx& r, duration retry_after) {
  if (r.svc.draining.load()) {
    co_return co_await r.reply(http::local_error::shutting_down, "the sidecar is shutting down", false, 1);
  }
  r.stats().rejected().inc();
  const auto ls = r.svc.gate.last(r.key);
  co_return co_await r.reply(http::local_error::rate_limited,
                             "the predicted wait exceeds the allowed queue time", r.keep_after_local(),
                             retry_after_s(retry_after),
                             http::rate_limit_echo{ls.limit, ls.remaining, ls.reset_epoch});
}

bool client_gone(request_ctx& r) {
  r.rec.status = 499;
  r.rec.local_reason = "client_gone";
  return false;
}

// Breaker: an open circuit answers at once, without touching Okta. While a half-open breaker's
// probe is in flight, its outcome decides (within this request's deadline).
asio::awaitable<stage_result> pass_breaker(request_ctx& r, request_guard& guard) {
  const auto& host = r.dest.origin.host;
  auto permit = r.svc.breakers.try_acquire(host, r.svc.clock.now());
  while (permit.hold && r.svc.clock.now() < r.request_deadline) {
    co_await r.svc.held_for_probe.wait(host, r.request_deadline);
    permit = r.svc.breakers.try_acquire(host, r.svc.clock.now());
  }
  if (!permit.allowed) {
    r.stats().breaker_rejections().inc();
    if (auto stale = co_await serve_stale(r)) co_return stale;
    co_return co_await r.reply(http::local_error::circuit_open,
                               "recent requests to this host failed; not sending more for now",
                               r.keep_after_local(), retry_after_s(permit.retry_after));
  }
  guard.probe = permit.probe;
  co_return std::nullopt;
}

// Admission: now, after a wait in the queue, or a local 429.
asio::awaitable<stage_result> admit(request_ctx& r, request_guard& guard,
                                    const ratelimit::admission_request& areq,
                                    resilience::attempt_machine& m) {
  auto& svc = r.svc;
  const auto queued_at = svc.clock.now();
  // The executor is a named local: GCC 12 may destroy a temporary that lives inside a
  // co_await expression twice (the tunnel crash found earlier).
  const auto ex = co_await asio::this_coro::executor;
  auto sub = svc.gate.submit(areq, ex);
  auto res = sub.res;
  if (res.kind == rate_gate::outcome::queued) res = co_await admit_watching(r.c, r.down, svc.gate.wait(sub));
  if (res.kind == rate_gate::outcome::cancelled) {
    r.stats().cancelled().inc();
    m.on_client_gone();
    co_return client_gone(r);
  }
  if (res.kind == rate_gate::outcome::rejected) {
    const auto refused = m.on_admission_refused(res.retry_after);
    co_return co_await reject_rate_limited(r, refused.delay);
  }
  guard.ticket = res.id;
  const auto waited = svc.clock.now() - queued_at;
  r.rec.queue_wait_ms += std::chrono::duration<double, std::milli>(waited).count();
  r.stats().queue_wait().observe(std::chrono::duration<double>(waited).count());
  r.stats().admitted().inc();
  co_return std::nullopt;
}

// How an attempt failed without a response.
struct attempt_failure {
  bool failed = false;
  bool timed_out = false;  // no response head in time
  resilience::failure_kind kind{};
  std::string detail;
};

// One try: a pooled or new connection, the request written, the final response head read.
asio::awaitable<stage_result> attempt(request_ctx& r, connection_lease& lease, response_head& rh,
                                      head_result& hr, attempt_failure& failure) {
  auto& svc = r.svc;
  auto acq = co_await svc.pool.acquire(r.dest.origin, r.request_deadline);
  if (!acq.conn) {
    failure.failed = true;
    failure.detail = std::string(upstream::to_string(acq.status)) + ": " + acq.detail;
    failure.kind = acq.status == upstream::connect_status::tls_failed ||
                           acq.status == upstream::connect_status::tls_timeout
                       ? resilience::failure_kind::tls_failed
                       : resilience::failure_kind::connect_failed;
    if (acq.status == upstream::connect_status::pool_exhausted) {
      // Our own connection limit, not the upstream's failure: the breaker does not count it
      // (issue 14: slow uploads holding the pool must not open the breaker for every app).
      co_return co_await r.reply(http::local_error::pool_exhausted, failure.detail, r.keep_after_local(), 1);
    }
    if (acq.status == upstream::connect_status::forbidden_address) {
      co_return co_await r.reply(http::local_error::host_not_allowed,
                                 "the host resolves to a forbidden address", r.keep_after_local());
    }
    if (acq.status == upstream::connect_status::connect_timeout ||
        acq.status == upstream::connect_status::tls_timeout) {
      auto& timeouts = acq.status == upstream::connect_status::tls_timeout ? svc.metrics.timeout_tls_handshake
                                                                           : svc.metrics.timeout_connect;
      timeouts.get().inc();
    }
    co_return std::nullopt;
  }
  lease.conn = std::move(acq.conn);
  lease.conn->count_request();
  const auto header_deadline =
      std::min(r.request_deadline, svc.clock.now() + milliseconds(r.rt.cfg.upstream.response_timeout_ms));
  if (r.out.streamed && !co_await r.send_continue()) co_return false;
  auto& conn = *lease.conn;
  hr = co_await send_and_read_head(r.c, r.down, r.buf, conn, r.out, rh, header_deadline, r.version);
  switch (hr.status) {
    case send_status::ok:
      break;
    case send_status::client_body_error:
      // As in read_body: the deadline closed the client connection; the upstream one is dropped.
      if (hr.ec == beast::error::timeout) co_return body_timed_out(r);
      // The upstream saw an incomplete request on a connection we now close: it cannot act on it.
      co_return co_await r.reply(body_error(hr.ec), "could not read the request body", false);
    case send_status::client_gone:
      co_return client_gone(r);
    case send_status::protocol_error:
      failure = {true, false, resilience::failure_kind::reset_after_send,
                 "bad_response: interim responses without a final one, or 101"};
      break;
    case send_status::write_failed_before_body:
      // The head could not be written whole (typically a pooled connection the server had
      // closed): Okta cannot have processed it, so any method may be sent again.
      failure = {true, false, resilience::failure_kind::reset_before_send,
                 "write failed: " + hr.ec.message()};
      break;
    case send_status::write_failed:
    case send_status::response_failed:
      failure = {true, false, resilience::failure_kind::reset_after_send,
                 "upstream connection failed: " + hr.ec.message()};
      break;
    case send_status::response_timeout:
      failure = {true, true, resilience::failure_kind::response_timeout, "no response headers in time"};
      svc.metrics.timeout_response_headers.get().inc();
      break;
  }
  co_return std::nullopt;
}

// A failure without a response: never returned to the pool, counted by the breaker; retried
// when the policy, the body and the retry budget allow, else answered (stale, 504 or 502).
asio::awaitable<stage_result> after_failure(request_ctx& r, request_guard& guard, connection_lease& lease,
                                            const attempt_failure& failure, resilience::attempt_machine& m,
                                            resilience::attempt_action& act) {
  auto& svc = r.svc;
  svc.metrics.upstream_failures.with({r.dest.origin.host, failure.detail.substr(0, failure.detail.find(':'))})
      .inc();
  svc.breakers.record(r.dest.origin.host, resilience::outcome::failure, guard.probe, svc.clock.now());
  guard.probe = false;
  if (guard.ticket) svc.gate.on_failure(std::exchange(guard.ticket, 0));
  lease.reusable = false;
  lease.give_back();
  act = m.on_failure(failure.kind, svc.clock.now(), random01(), retry_budget_of(svc));
  const bool may_retry = act.step == resilience::next_step::backoff;
  svc.log.debug(logging::event("upstream failure")
                    .with("conn", r.c.id)
                    .with("req", r.rec.id)
                    .with("host", r.dest.origin.host)
                    .with("detail", failure.detail)
                    .with("retry", may_retry));
  if (may_retry) {
    svc.metrics.retried.get().inc();
    co_return std::nullopt;  // forward() backs off, then the next attempt is admitted
  }
  if (auto stale = co_await serve_stale(r)) co_return stale;
  if (act.reason == resilience::give_up_reason::upstream_timeout) {
    // The request was written whole (the client's body included) before we waited for the
    // head, so the client connection is still in step: keep it (issue 4: the next request
    // on the same connection must work). Only the upstream connection is discarded.
    co_return co_await r.reply(http::local_error::upstream_timeout, failure.detail, r.keep_alive);
  }
  co_return co_await r.reply(http::local_error::upstream_unreachable, failure.detail, r.keep_after_local());
}

// Okta did not process a 429 (docs/okta-behaviour.md): it goes again with the SDKs' retry headers,
// or, when the limiter gives up on it, is answered with the contract's local 429.
asio::awaitable<stage_result> absorb_429(request_ctx& r, request_guard& guard,
                                         const resilience::attempt_machine& m,
                                         const resilience::attempt_action& act) {
  r.stats().absorbed_429().inc();
  if (!r.first_okta_request_id.empty() && !r.client_sent_retry_for) {
    r.out.head_and_body.set("X-Okta-Retry-For", r.first_okta_request_id);
  }
  r.out.head_and_body.set("X-Okta-Retry-Count", std::to_string(r.client_retry_count + m.requeues()));
  if (act.step == resilience::next_step::requeue) co_return std::nullopt;
  guard.ticket = 0;
  co_return co_await reject_rate_limited(r, act.delay);
}

// The machine's `requeue`: waits, from the front of the queue, to be admitted again; then the
// breaker, as before every attempt.
asio::awaitable<stage_result> requeue_wait(request_ctx& r, request_guard& guard,
                                           resilience::attempt_machine& m, resilience::attempt_action& act) {
  auto& svc = r.svc;
  const auto queued_at = svc.clock.now();
  auto again = co_await admit_watching(r.c, r.down, svc.gate.wait_again(guard.ticket));
  if (again.kind == rate_gate::outcome::cancelled) {
    guard.ticket = 0;
    m.on_client_gone();
    co_return client_gone(r);
  }
  if (again.kind == rate_gate::outcome::rejected) {
    guard.ticket = 0;
    const auto refused = m.on_admission_refused(again.retry_after);
    co_return co_await reject_rate_limited(r, refused.delay);
  }
  r.rec.queue_wait_ms += std::chrono::duration<double, std::milli>(svc.clock.now() - queued_at).count();
  act = m.on_admitted();
  r.rec.attempts = m.attempts();
  co_return co_await pass_breaker(r, guard);
}

resilience::limiter_verdict verdict_of(ratelimit::response_kind k) {
  switch (k) {
    case ratelimit::response_kind::deliver:
      return resilience::limiter_verdict::deliver;
    case ratelimit::response_kind::requeued:
      return resilience::limiter_verdict::requeue;
    case ratelimit::response_kind::give_up:
      return resilience::limiter_verdict::give_up;
  }
  return resilience::limiter_verdict::deliver;
}

// What the response's status asks of the request after its head arrived.
struct response_plan {
  int status = 0;
  resilience::outcome outcome{};
  ratelimit::response_decision decision{ratelimit::response_kind::deliver, {}};
  resilience::limiter_verdict verdict = resilience::limiter_verdict::deliver;
  bool client_in_step = true;
};

// A 429 to absorb, a 5xx to retry, or a 401/403 to diagnose: the small body is read whole,
// then the request is tried again or the response delivered (with its diagnosis).
asio::awaitable<stage_result> deliver_whole(request_ctx& r, request_guard& guard, connection_lease& lease,
                                            response_head& rh, const head_result& hr,
                                            const response_plan& plan, resilience::attempt_machine& m,
                                            resilience::attempt_action& act) {
  auto& svc = r.svc;
  auto& conn = *lease.conn;
  std::optional<bhttp::response<bhttp::string_body>> whole;
  bool reusable = false;
  whole = co_await read_small_body(r.c, conn, *rh.parser, reusable);
  lease.reusable = reusable && !hr.request_incomplete;
  lease.give_back();
  act = m.on_response(plan.status, plan.verdict, plan.decision.retry_after, whole.has_value(),
                      svc.clock.now(), random01(), retry_budget_of(svc));
  if (act.step == resilience::next_step::requeue || act.reason == resilience::give_up_reason::rate_limited) {
    co_return co_await absorb_429(r, guard, m, act);
  }
  if (act.step == resilience::next_step::backoff) {
    svc.metrics.retried.get().inc();
    co_return std::nullopt;  // forward() backs off, then the next attempt is admitted
  }
  if (plan.outcome == resilience::outcome::failure) {
    if (auto stale = co_await serve_stale(r)) co_return stale;
  }
  if (!whole) {
    co_return co_await r.reply(http::local_error::upstream_unreachable,
                               "the upstream response body could not be read", false);
  }
  const int status = plan.status;
  if ((status == 401 || status == 403) && r.dest.inspect) {
    const auto diag =
        auth::diagnose(status, r.method, r.npath, r.dest.origin.host, r.token.value_or(auth::token_info{}),
                       whole->body(), whole->base()[bhttp::field::www_authenticate],
                       svc.okta_clock.now_epoch(svc.clock.wall_now()), r.rt.scopes);
    whole->set("X-Okta-Sidecar-Diagnosis", diag.reason);
    record_auth_failure(r, status, diag, diag.reason.substr(0, diag.reason.find(':')), false);
  }
  if (status < 500) {
    auto copy = shareable(status, whole->base(), r.head_request);
    if (!r.head_request) copy.body = whole->body();
    r.flight.land(std::make_shared<const shared_response>(std::move(copy)));
  }
  r.rec.status = status;
  const bool keep = r.keep_alive && plan.client_in_step;
  bool ok = false;
  co_await send_buffered(r.c, r.down, *whole, r.head_request, keep, r.version, r.rec, ok);
  co_return ok&& keep;
}

// The common case: the response streams through, with a copy kept for coalesced followers and,
// for a public document, the cache.
asio::awaitable<bool> relay_through(request_ctx& r, request_guard& guard, connection_lease& lease,
                                    response_head& rh, const head_result& hr, const response_plan& plan) {
  auto& svc = r.svc;
  auto& conn = *lease.conn;
  auto& rp = *rh.parser;
  const int status = plan.status;
  if (status == 429 && guard.ticket) {
    // Not replayable (streamed body): the scheduler must not keep it queued.
    svc.gate.cancel(std::exchange(guard.ticket, 0));
  }
  r.rec.status = status;
  const bool cacheable = !r.cache_key.empty() && status == 200 && !r.head_request;
  std::optional<std::string> captured;
  shared_response shared;
  cache::cache_control cc;
  // (Bodiless statuses such as 204 are not shared: re-framing would add a Content-Length.)
  if (cacheable || (r.flight.f && status_has_body(static_cast<unsigned>(status)) &&
                    svc.reads.has_followers(*r.flight.f))) {
    captured.emplace();
    shared = shareable(status, rp.get(), r.head_request);
    std::vector<std::string_view> cc_values;
    for (const auto& f : rp.get()) {
      if (f.name() == bhttp::field::cache_control) cc_values.push_back(f.value());
    }
    cc = cache::parse_cache_control(cc_values);
  }
  bool upstream_reusable = false;
  relay_status rs;
  const bool client_keep_alive = r.keep_alive && plan.client_in_step && !r.out.client_body_failed;
  const std::size_t capture_limit = r.rt.cfg.client.max_buffered_body_bytes;
  rs = co_await relay_response(r.c, r.down, conn, rp, r.head_request, client_keep_alive, r.version, r.rec,
                               upstream_reusable, captured, capture_limit);
  if (rs == relay_status::ok && captured) {
    shared.body = std::move(*captured);
    if (cacheable) svc.reads.store(r.cache_key, shared, cc, svc.clock.now());
    r.flight.land(std::make_shared<const shared_response>(std::move(shared)));
  }
  lease.reusable = rs == relay_status::ok && upstream_reusable && !hr.request_incomplete;
  if (rs == relay_status::ok) co_return client_keep_alive;
  svc.log.info(logging::event("response relay interrupted")
                   .with("conn", r.c.id)
                   .with("req", r.rec.id)
                   .with("side", rs == relay_status::client_failed ? "downstream" : "upstream")
                   .with("error", r.rec.error));
  if (rs == relay_status::upstream_failed) {
    svc.metrics.upstream_failures.with({r.dest.origin.host, "body_truncated"}).inc();
    // Nothing reached the client yet: it gets a well-formed error rather than an empty reply.
    if (r.rec.bytes_out == 0) {
      co_return co_await r.reply(http::local_error::upstream_unreachable,
                                 "the upstream response ended before its body did", false);
    }
  }
  co_return false;
}

// A response head arrived: it teaches the breaker and the scheduler, then decides.
asio::awaitable<stage_result> after_response(request_ctx& r, request_guard& guard, connection_lease& lease,
                                             response_head& rh, const head_result& hr,
                                             resilience::attempt_machine& m,
                                             resilience::attempt_action& act) {
  auto& svc = r.svc;
  const auto& res = rh.parser->get();
  response_plan plan;
  plan.status = res.result_int();
  // An upstream that answered before it read all of our request leaves the connection out of
  // step, and a client whose streamed body we stopped reading leaves its own out of step too.
  plan.client_in_step = !r.out.streamed || r.out.stream_parser->is_done();
  r.rec.upstream_status = plan.status;
  if (auto id = res.find("X-Okta-Request-Id"); id != res.end()) {
    r.rec.okta_request_id = std::string(id->value());
    if (r.first_okta_request_id.empty()) r.first_okta_request_id = r.rec.okta_request_id;
  }
  r.stats().upstream_responses(plan.status).inc();
  r.stats().upstream_latency().observe(std::chrono::duration<double>(svc.clock.now() - r.start).count());
  const auto obs = observe(r.c, r.dest.origin.host, res);
  plan.outcome = resilience::classify_status(plan.status);
  svc.breakers.record(r.dest.origin.host, plan.outcome, guard.probe, svc.clock.now());
  guard.probe = false;
  if (plan.status == 429) r.stats().upstream_429().inc();
  if (guard.ticket) {
    plan.decision = svc.gate.on_response(guard.ticket, plan.status, obs, r.cls.per_principal);
    if (plan.decision.kind == ratelimit::response_kind::deliver) guard.ticket = 0;
  }
  plan.verdict = verdict_of(plan.decision.kind);
  if (m.must_read_whole(plan.status, plan.verdict) || plan.status == 401 || plan.status == 403) {
    co_return co_await deliver_whole(r, guard, lease, rh, hr, plan, m, act);
  }
  act = m.on_response(plan.status, plan.verdict, plan.decision.retry_after, true, svc.clock.now(), 0.0,
                      retry_budget_of(svc));
  co_return co_await relay_through(r, guard, lease, rh, hr, plan);
}

// The machine's `admit`: the breaker, then the scheduler.
asio::awaitable<stage_result> admit_attempt(request_ctx& r, request_guard& guard,
                                            const ratelimit::admission_request& areq,
                                            resilience::attempt_machine& m, resilience::attempt_action& act) {
  if (auto done = co_await pass_breaker(r, guard)) co_return done;
  if (auto done = co_await admit(r, guard, areq, m)) co_return done;
  act = m.on_admitted();
  co_return std::nullopt;
}

// The machine's `send`: one try on a connection of its own, then what its outcome asks for.
asio::awaitable<stage_result> send_attempt(request_ctx& r, request_guard& guard,
                                           resilience::attempt_machine& m, resilience::attempt_action& act) {
  connection_lease lease{r.svc.pool, r.dest.origin, nullptr};
  response_head rh{static_cast<std::uint32_t>(r.rt.cfg.client.max_header_bytes), r.head_request, {}};
  head_result hr;
  attempt_failure failure;
  if (auto done = co_await attempt(r, lease, rh, hr, failure)) co_return done;
  // Not one conditional expression: GCC 12 mishandles temporaries of co_await operands there.
  stage_result done;
  if (failure.failed) {
    done = co_await after_failure(r, guard, lease, failure, m, act);
  } else {
    done = co_await after_response(r, guard, lease, rh, hr, m, act);
  }
  co_return done;
}

// The whole life of one request after its head was read and validated: identify, budget
// savers, body, then attempts (breaker, admission, upstream) until one is answered.
asio::awaitable<bool> forward(conn_ctx& c, net::stream& down, beast::flat_buffer& buf,
                              bhttp::request_parser<bhttp::empty_body>& hp, const destination& dest,
                              const http::validation& valid, request_record& rec) {
  request_ctx r(c, down, buf, dest, rec);
  const auto& req = hp.get();
  identify(r, req);
  if (auto done = co_await reject_expired_token(r, hp.is_done())) co_return *done;
  if (auto done = co_await shared_read(r, req, valid)) co_return *done;
  prepare_upstream_head(r, req);
  if (auto done = co_await read_body(r, hp, valid)) co_return *done;

  // The client may shorten (never lengthen) how long it is willing to wait in the queue.
  duration max_wait = r.rt.scheduler.max_wait;
  if (r.client_max_wait) max_wait = std::min<duration>(max_wait, milliseconds(*r.client_max_wait));
  const ratelimit::admission_request areq{r.key,
                                          r.token ? auth::caller_key(r.authz, r.svc.digest) : 0,
                                          r.rt.is_interactive(r.npath),
                                          r.cls.rate_limited,
                                          std::min(r.start + max_wait, r.request_deadline),
                                          r.cls.capacity_percent.value_or(0)};
  request_guard guard{r.svc, dest.origin.host};
  r.svc.breakers.on_request(r.start);
  resilience::attempt_machine m(r.rt.retry, r.method, !r.out.streamed, r.request_deadline);
  auto act = m.start();
  for (;;) {
    rec.attempts = m.attempts();
    stage_result done;
    // Each step's stage answers the request (done) or leaves the machine's next step in `act`.
    switch (act.step) {
      case resilience::next_step::admit:
        done = co_await admit_attempt(r, guard, areq, m, act);
        break;
      case resilience::next_step::send:
        done = co_await send_attempt(r, guard, m, act);
        break;
      case resilience::next_step::backoff:
        co_await sleep_for(act.delay);
        act = m.on_backoff_elapsed();
        break;
      case resilience::next_step::requeue:
        done = co_await requeue_wait(r, guard, m, act);
        break;
      case resilience::next_step::deliver:
      case resilience::next_step::give_up:
        // The stages that reach these answer in place; the machine ended without an answer.
        done = co_await r.reply(http::local_error::upstream_unreachable, "no upstream response",
                                r.keep_after_local());
        break;
    }
    if (done) co_return *done;
  }
}

// Reads the next request head: the keep-alive idle timeout until its first byte, then the
// header timeout for the whole head (slow-loris clients are cut off there).
enum class head_status { ok, closed, replied };

enum class raw_head { incomplete, complete, obs_fold };

// Finds the end of a request head in raw bytes, from `from` on (bytes before it were seen):
// a line feed followed by another line end ends the head; one followed by SP or HTAB is
// obs-fold (or whitespace before the first field, RFC 9112 §2.2), which we refuse.
raw_head scan_raw_head(std::string_view b, std::size_t from) {
  for (std::size_t i = from; i + 1 < b.size(); ++i) {
    if (b[i] != '\n') continue;
    const char next = b[i + 1];
    if (next == '\r' || next == '\n') return raw_head::complete;
    if (next == ' ' || next == '\t') return raw_head::obs_fold;
  }
  return raw_head::incomplete;
}

asio::awaitable<head_status> read_head(conn_ctx& c, net::stream& s, beast::flat_buffer& buf,
                                       bhttp::request_parser<bhttp::empty_body>& p, request_scope& scope) {
  const auto& cfg = c.rt->cfg.client;
  if (buf.size() == 0) {
    c.ctl.idle = true;
    s.expires_after(milliseconds(cfg.idle_timeout_ms));
    // A kept-alive connection waits for its next request without a read buffer: thousands of
    // idle clients would otherwise each hold one.
    buf.shrink_to_fit();
    auto [wec, wn] = co_await s.async_wait_readable(use_tuple);
    if (wec) {
      c.ctl.idle = false;
      co_return head_status::closed;
    }
    auto [ec, n] = co_await s.async_read_some(buf.prepare(read_room(buf)), use_tuple);
    c.ctl.idle = false;
    if (ec) co_return head_status::closed;
    buf.commit(n);
  }
  c.ctl.idle = false;
  p.header_limit(static_cast<std::uint32_t>(cfg.max_header_bytes));
  p.body_limit(cfg.max_body_bytes);
  s.expires_after(milliseconds(cfg.header_timeout_ms));
  // Collect the whole head first and look at its raw bytes: Beast unfolds obs-fold silently,
  // so the validator never sees it (RFC 9112 §5.2: a proxy must reject or replace it; an
  // upstream that unfolds differently is a smuggling vector). One deadline covers the head.
  std::size_t scanned = 0;
  for (;;) {
    const std::string_view raw(static_cast<const char*>(buf.data().data()), buf.size());
    const auto st = scan_raw_head(raw, scanned);
    if (st == raw_head::obs_fold) {
      co_await send_local(c, s, http::local_error::bad_request, "obsolete line folding in the request head",
                          scope.begin(), false);
      co_return head_status::replied;
    }
    if (st == raw_head::complete || buf.size() >= cfg.max_header_bytes || read_room(buf) == 0) break;
    scanned = raw.empty() ? 0 : raw.size() - 1;
    auto [rec_ec, rn] = co_await s.async_read_some(buf.prepare(read_room(buf)), use_tuple);
    if (rec_ec) {
      if (rec_ec == beast::error::timeout) c.svc.metrics.timeout_client_header.get().inc();
      co_return head_status::closed;
    }
    buf.commit(rn);
  }
  auto [ec, n] = co_await bhttp::async_read_header(s, buf, p, use_tuple);
  if (!ec) co_return head_status::ok;
  if (ec == beast::error::timeout) {
    c.svc.metrics.timeout_client_header.get().inc();
    co_return head_status::closed;
  }
  if (ec == bhttp::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
      ec == asio::error::operation_aborted || ec == asio::ssl::error::stream_truncated) {
    co_return head_status::closed;
  }
  auto& rec = scope.begin();
  if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
    co_await send_local(c, s, http::local_error::headers_too_large, "request head too large", rec, false);
  } else if (ec == bhttp::error::body_limit) {
    // Beast checks Content-Length against body_limit while parsing the head.
    co_await send_local(c, s, http::local_error::payload_too_large, "request body too large", rec, false);
  } else {
    co_await send_local(c, s, http::local_error::bad_request, "malformed request", rec, false);
  }
  co_return head_status::replied;
}

// Serves HTTP/1.1 requests on a stream: the proxy port itself (`tunnel` empty) or the inside
// of an intercepted CONNECT tunnel (`tunnel` is where it leads).
asio::awaitable<void> serve(conn_ctx& c, net::stream& s, beast::flat_buffer& buf,
                            const std::optional<upstream::origin>& tunnel);

asio::awaitable<void> handle_connect(conn_ctx& c, net::stream& down, beast::flat_buffer& buf,
                                     bhttp::request_parser<bhttp::empty_body>& hp, request_scope& scope);

bool proxy_auth_ok(conn_ctx& c, const bhttp::request_header<>& req) {
  if (!c.rt->proxy_auth.enabled()) return true;
  auto h = req.find(bhttp::field::proxy_authorization);
  if (h == req.end()) return false;
  auto user = c.rt->proxy_auth.authenticate(h->value());
  if (user) c.user = std::move(*user);
  return user.has_value();
}

asio::awaitable<void> serve(conn_ctx& c, net::stream& s, beast::flat_buffer& buf,
                            const std::optional<upstream::origin>& tunnel) {
  for (;;) {
    c.rt = c.svc.rt.load();
    // Ends (writes its access-log line) when this iteration does, whichever way.
    request_scope scope(c);
    bhttp::request_parser<bhttp::empty_body> hp;
    auto hs = co_await read_head(c, s, buf, hp, scope);
    if (hs != head_status::ok) co_return;
    auto& rec = scope.begin();
    auto& req = hp.get();
    rec.method = std::string(req.method_string());
    rec.path = http::redact_target(req.target());
    if (auto t = req.find("traceparent"); t != req.end())
      rec.trace_id = http::trace_id_of(t->value()).value_or("");
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive();

    if (!tunnel && !proxy_auth_ok(c, req)) {
      co_await send_local(c, s, http::local_error::proxy_auth_required, "proxy authentication required", rec,
                          false, version);
      co_return;
    }
    auto hv = views(req);
    auto valid = http::validate_request(req.method_string(), req.target(), version, hv, c.rt->limits);
    if (valid.code != http::verdict_code::ok) {
      auto err = valid.code == http::verdict_code::payload_too_large   ? http::local_error::payload_too_large
                 : valid.code == http::verdict_code::headers_too_large ? http::local_error::headers_too_large
                                                                       : http::local_error::bad_request;
      co_await send_local(c, s, err, valid.detail, rec, false, version);
      co_return;
    }
    if (c.svc.draining.load()) {
      co_await send_local(c, s, http::local_error::shutting_down, "the sidecar is shutting down", rec, false,
                          version, 1);
      co_return;
    }

    if (!tunnel && req.method() == bhttp::verb::connect) {
      co_await handle_connect(c, s, buf, hp, scope);
      co_return;
    }

    // Where does it go?
    destination dest;
    std::string refuse;
    const std::string host_header(req[bhttp::field::host]);
    if (tunnel) {
      dest.origin = *tunnel;
      if (req.target().starts_with("/")) {
        dest.path_and_query = std::string(req.target());
      } else if (auto t = http::parse_absolute_form(req.target()); t && lower(t->host) == dest.origin.host) {
        dest.path_and_query = t->path_and_query;
      } else {
        refuse = "request target does not match the CONNECT host";
      }
      if (refuse.empty() && !host_header.empty() &&
          !http::host_header_matches_tunnel(host_header, dest.origin.host, dest.origin.port)) {
        refuse = "Host header does not match the CONNECT host";
      }
    } else {
      auto t = http::parse_absolute_form(req.target());
      if (!t) {
        co_await send_local(c, s, http::local_error::bad_request,
                            "a proxy request needs an absolute-form target (http://host/path)", rec, false,
                            version);
        co_return;
      }
      auto host = policy::host_policy::normalize_host(t->host);
      if (!host) {
        refuse = "invalid host";
      } else {
        dest.origin = upstream::origin{t->scheme == "https", *host, t->port};
        dest.path_and_query = t->path_and_query;
        if (!host_header.empty() && !http::host_header_matches(host_header, *t)) {
          refuse = "Host header disagrees with the request URL";
        } else if (t->scheme != "https" && !c.rt->cfg.access.allow_cleartext &&
                   c.rt->hosts.intercepts(*host)) {
          // The app's Authorization header would cross the network in clear (issue 14).
          rec.host = *host;
          co_await send_local(c, s, http::local_error::cleartext_refused,
                              "http:// to an intercepted host; use https://", rec, false, version);
          co_return;
        } else {
          auto d = c.rt->hosts.decide(*host, t->port);
          if (d.r == policy::route::refuse) refuse = d.why;
          dest.inspect = d.r == policy::route::intercept;
        }
      }
    }
    rec.host = dest.origin.host;
    if (!refuse.empty()) {
      co_await send_local(c, s, http::local_error::host_not_allowed, refuse, rec, keep_alive, version);
      if (!keep_alive || valid.body.kind != http::framing_kind::none) co_return;
      continue;
    }
    const bool again = co_await forward(c, s, buf, hp, dest, valid, rec);
    if (!again || c.svc.draining.load()) co_return;
  }
}

// Two one-way pumps; each ends by half-closing the other side (RFC 9110 §9.3.6).
asio::awaitable<void> pump(net::stream& from, net::stream& to, duration idle, std::uint64_t& bytes) {
  std::array<char, relay_chunk> chunk;
  for (;;) {
    from.expires_after(idle);
    auto [ec, n] = co_await from.async_read_some(asio::buffer(chunk), use_tuple);
    if (n > 0) {
      to.expires_after(idle);
      auto [wec, wn] = co_await asio::async_write(to, asio::buffer(chunk.data(), n), use_tuple);
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
      co_await asio::async_write(down, asio::buffer(established.data(), established.size()), use_tuple);
  if (ec) co_return;
  rec.status = 200;
  auto& up = acq.conn->stream();
  if (buf.size() > 0) {
    auto [wec, wn] = co_await asio::async_write(up, buf.data(), use_tuple);
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
      co_await asio::async_write(down, asio::buffer(established.data(), established.size()), use_tuple);
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

}  // namespace

asio::awaitable<void> run_session(services& svc, tcp::socket sock, std::uint64_t conn_id,
                                  session_control& ctl) {
  co_await asio::this_coro::throw_if_cancelled(false);
  boost::system::error_code ec;
  auto remote = sock.remote_endpoint(ec);
  conn_ctx c{svc, conn_id, ctl, ec ? std::string() : remote.address().to_string(), svc.rt.load()};
  sock.set_option(tcp::no_delay(true), ec);
  net::stream down(std::move(sock));
  // Bounded by the head limit: requests are parsed in place and bodies pass through in pieces,
  // so only a head, a chunk header or a trailer ever has to fit (see config::max_head_bytes).
  beast::flat_buffer buf(c.rt->cfg.client.max_header_bytes);
  if (!c.rt->clients.empty() && !c.rt->clients.contains(c.peer)) {
    request_scope refused(c);
    co_await send_local(c, down, http::local_error::client_not_allowed, "source address not allowed",
                        refused.begin(), false);
  } else {
    svc.metrics.connections_proxy.get().inc();
    co_await serve(c, down, buf, std::nullopt);
    // The tunnel is served here, after the CONNECT's coroutine frames are gone: an intercepted
    // connection is long-lived, and those frames would otherwise stay with it while it idles.
    if (c.tunnel) {
      co_await serve(c, down, buf, c.tunnel);
      if (down.is_tls()) {
        down.expires_after(seconds(1));
        co_await down.async_shutdown(use_tuple);
      }
    }
  }
  if (down.socket().is_open()) {
    down.socket().shutdown(tcp::socket::shutdown_send, ec);
    down.socket().close(ec);
  }
}

}  // namespace okta_sidecar::proxy
