#include "pipeline.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/http/read.hpp>
#include <charconv>
#include <optional>

#include "okta_sidecar/auth/diagnosis.hpp"
#include "okta_sidecar/auth/sha256.hpp"
#include "okta_sidecar/auth/token_info.hpp"
#include "okta_sidecar/cache/document_cache.hpp"
#include "okta_sidecar/ratelimit/coalesce_key.hpp"
#include "okta_sidecar/ratelimit/header_dialect.hpp"
#include "okta_sidecar/ratelimit/path.hpp"
#include "okta_sidecar/resilience/attempt_machine.hpp"
#include "relay.hpp"
#include "request_scope.hpp"

namespace okta_sidecar::proxy::detail {
namespace {

using namespace asio::experimental::awaitable_operators;
constexpr std::size_t max_chunk_extension_bytes = 1024;

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
  down.release_buffers();  // a queued request keeps only its small state (see net::stream)
  auto r = co_await (std::move(op) || watch_client_gone(down.socket()));
  if (r.index() == 0) co_return std::get<0>(r);
  co_return rate_gate::result{rate_gate::outcome::cancelled, 0, {}};
}

// Holds an admission ticket and a breaker probe; whatever path leaves the request releases them.
struct request_guard {
  services& svc;
  std::string host;
  ratelimit::ticket ticket = 0;
  std::shared_ptr<rate_gate::waiter> requeued{};  // the ticket's spot after a requeueing 429
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

ratelimit::observation observe(conn_ctx& c, const std::string& host,
                               std::span<const http::header_view> fields, time_point now) {
  const auto wall = c.svc.clock.wall_now();
  // (ratelimit::header_view is the same pair of views)
  auto obs = ratelimit::parse_rate_limit_headers(fields, now, wall, c.svc.okta_clock.offset_bound(host));
  if (obs.server_date_epoch) c.svc.okta_clock.observe(host, *obs.server_date_epoch, wall);
  return obs;
}

std::optional<std::uint32_t> parse_max_wait_header(std::string_view v) {
  std::uint32_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size()) return std::nullopt;
  return out;
}

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

// What the stages of one request share. forward() owns it, on the heap from its thread's
// block_cache (in forward()'s frame it made that frame too large for Asio's frame recycling);
// each stage takes it by reference (Envoy's ActiveStream, without the filter chain).
struct request_ctx : net::recycled<request_ctx> {
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
  std::string_view npath;  // normalised: into dest.path_and_query, or npath_storage when it had to change
  std::string npath_storage;
  ratelimit::classification cls;
  ratelimit::bucket_key key;
  std::shared_ptr<known_caller> caller;  // null without an Authorization header
  std::optional<std::uint32_t> client_max_wait;
  bool client_sent_retry_for = false;
  std::uint32_t client_retry_count = 0;
  // The budget savers: a public document's cache key, and the coalesced flight this leads.
  std::string cache_key;
  flight_guard flight;
  // The upstream request, and the parser of a body still (partly) in the client's stream.
  outgoing out;
  // (Made only for a request with a body: most have none.)
  std::unique_ptr<bhttp::request_parser<bhttp::buffer_body>> body_parser;
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
    auto [ec, n] = co_await down.async_write_all(asio::buffer(line.data(), line.size()), use_tuple);
    co_return !ec;
  }
};

// Reads from the client's head all that later stages need: its parser moves into the body's.
void identify(request_ctx& r, const client_request& req, const http::request_fields& fields) {
  r.version = req.version();
  r.keep_alive = fields.keep_alive(r.version);
  r.method = std::string(req.method_string());
  r.head_request = req.method() == bhttp::verb::head;
  r.start = r.rec.started;  // the request scope's begin, moments ago: one clock read less
  r.request_deadline = r.start + milliseconds(r.rt.cfg.client.request_timeout_ms);
  r.npath = ratelimit::normal_path(r.dest.path_and_query, r.npath_storage);
  if (r.dest.inspect) {
    r.cls = r.rt.classifier.classify_normal(r.method, r.npath);
    // Client-chosen ids beyond the per-host cap share one overflow bucket (issue 14).
    r.cls.bucket = r.svc.gate.bucket_name(r.dest.origin.host, r.cls);
  } else {
    r.cls.group = r.cls.bucket = "tunnel";
    r.cls.rate_limited = false;
  }
  r.rec.bucket = r.cls.bucket;
  r.key = ratelimit::bucket_key{r.dest.origin.host, r.cls.bucket};
  series_of(r.c, r.rec);
  if (const std::string_view authz = fields.authorization; !authz.empty()) {
    auto& last = r.c.caller;  // the connection's previous request's, nearly always the same
    if (!last || last->info.authorization != authz)
      last = std::make_shared<known_caller>(known_caller{auth::inspect_caller(authz, r.svc.digest), {}});
    r.caller = last;
  }
  if (!fields.max_wait.empty()) r.client_max_wait = parse_max_wait_header(fields.max_wait);
  r.client_sent_retry_for = fields.has_retry_for;
  if (!fields.retry_count.empty())
    r.client_retry_count = parse_max_wait_header(fields.retry_count).value_or(0);
  r.expect_continue = http::expects_continue(r.version, fields.expect);
}

// One auth diagnosis, wherever it came from: counted, kept for /status, logged (never the token).
void record_auth_failure(request_ctx& r, int status, const auth::diagnosis& diag,
                         std::string_view metric_reason, bool local) {
  const std::string client_id = r.caller ? r.caller->info.token.cid : "";
  const std::string fingerprint = r.caller ? r.caller->info.token.fingerprint : "";
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
bool token_expired_locally(const request_ctx& r) {
  if (!r.dest.inspect || !r.rt.cfg.auth.reject_expired_locally || !r.caller) return false;
  return auth::expired_beyond(r.caller->info.token, r.svc.okta_clock.now_epoch(r.svc.clock.wall_now()), 30);
}

// The answer to a token_expired_locally() request.
asio::awaitable<bool> reject_expired_token(request_ctx& r, bool body_read) {
  const auto okta_now = r.svc.okta_clock.now_epoch(r.svc.clock.wall_now());
  // Same explanation as for Okta's own 401, so /status and the log show the saved requests.
  const auto diag = auth::diagnose(401, r.method, r.npath, r.dest.origin.host, r.caller->info.token, {}, {},
                                   okta_now, r.rt.scopes);
  record_auth_failure(r, 401, diag, "token_expired", true);
  // The request body, if any, is still unread: keeping the connection would make the next
  // request parse from the body bytes (a desync / smuggling vector), so close instead.
  co_return co_await r.reply(http::local_error::token_expired,
                             "the access token expired before the request was sent",
                             r.keep_alive && body_read, {}, {}, "token_expired");
}

// Budget savers (issue 15): Okta's public documents from the cache, and identical concurrent
// reads sharing one upstream request. Only GET/HEAD without a body.
bool may_share(const request_ctx& r, const client_request& req, const http::validation& valid) {
  const bool plain_read = r.dest.inspect && valid.body.kind == http::framing_kind::none &&
                          (req.method() == bhttp::verb::get || r.head_request);
  return plain_read && (r.rt.cfg.rate_limit.coalesce ||
                        (r.rt.cfg.cache.enabled && cache::is_public_document(r.dest.path_and_query)));
}

// A may_share() request: answered from the cache or a leader's response, or on its way upstream
// (as a leader, or alone).
asio::awaitable<stage_result> shared_read(request_ctx& r, const http::request_fields& fields) {
  auto& svc = r.svc;
  if (r.rt.cfg.cache.enabled && cache::is_public_document(r.dest.path_and_query)) {
    r.cache_key = r.dest.origin.host + ":" + std::to_string(r.dest.origin.port) + r.dest.path_and_query +
                  "\n" + std::string(fields.accept_encoding);
    const bool wants_origin = fields.cache_control.find("no-cache") != std::string_view::npos ||
                              fields.pragma.find("no-cache") != std::string_view::npos;
    if (auto hit = svc.reads.fresh(r.cache_key, svc.clock.now()); hit && !wants_origin) {
      co_return co_await send_shared(r.c, r.down, hit->doc, hit->age, "hit", r.head_request, r.keep_alive,
                                     r.version, r.rec);
    }
  }
  if (!r.rt.cfg.rate_limit.coalesce) co_return std::nullopt;
  const std::string_view cookie = fields.cookie;
  std::string credential;
  if (r.caller && cookie.empty()) {  // an API client: the same for every request of its caller
    auto& known = r.caller->coalesce_credential;
    if (known.empty()) known = auth::to_hex(auth::sha256_of(r.caller->info.authorization + "\n"));
    credential = known;
  } else if (r.caller || !cookie.empty()) {
    const std::string authz = r.caller ? r.caller->info.authorization : std::string();
    credential = auth::to_hex(auth::sha256_of(authz + "\n" + std::string(cookie)));
  }
  const auto key = ratelimit::coalesce_key(
      {r.method, r.dest.origin.host, r.dest.origin.port, r.dest.path_and_query, credential, fields.accept,
       fields.accept_encoding, fields.accept_language, false, fields.conditional});
  if (!key) co_return std::nullopt;
  auto joined = svc.reads.join(*key);
  if (joined.leader) {
    r.flight.f = std::move(joined.f);
    co_return std::nullopt;
  }
  r.down.release_buffers();  // waiting for the leader's answer
  if (auto shared = co_await svc.reads.follow(std::move(joined.f), r.request_deadline)) {
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
// An HTTP/1.1 request without Connection fields persists: none is added.
void prepare_upstream_head(request_ctx& r, client_request& req, bool has_host) {
  auto& h = r.out.head_and_body;
  // The client's fields move over: nothing reads them after this (identify took what it needs,
  // and the body's parser keeps its framing apart from them).
  static_cast<bhttp::fields&>(h) = std::move(static_cast<bhttp::fields&>(req));
  h.method_string(r.method);
  h.target(r.dest.path_and_query);
  h.version(11);
  static constexpr std::array<std::string_view, 2> ours = {"expect", "x-okta-sidecar-max-wait-ms"};
  strip_hop_by_hop(h, ours);
  if (!has_host) {
    const auto& o = r.dest.origin;
    h.set(bhttp::field::host, o.port == (o.tls ? 443 : 80) ? o.host : o.host + ":" + std::to_string(o.port));
  }
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
// replayed after a 429 or a failure; only a larger one streams (and cannot be retried). Called
// for a request with a body.
asio::awaitable<stage_result> read_body(request_ctx& r, bhttp::request_parser<bhttp::empty_body>& hp,
                                        const http::validation& valid) {
  const auto& client = r.rt.cfg.client;
  // Chunk extensions are never forwarded meaning-for-meaning by us (we re-frame), and Beast
  // bounds them only by the body limit: cap them so they cannot carry smuggled bytes or
  // burn CPU (issue 6: limits on chunk extensions).
  auto limit_chunk_ext = [](std::uint64_t, std::string_view extensions, boost::system::error_code& ec) {
    if (extensions.size() > max_chunk_extension_bytes) ec = bhttp::error::bad_chunk_extension;
  };
  r.body_parser = std::make_unique<bhttp::request_parser<bhttp::buffer_body>>(std::move(hp));
  auto& p = *r.body_parser;
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
// probe is in flight, its outcome decides (within this request's deadline). `permit` is the
// board's first answer, which let the request neither pass nor fail yet.
asio::awaitable<stage_result> pass_breaker(request_ctx& r, request_guard& guard, resilience::permit permit) {
  const auto& host = r.dest.origin.host;
  auto& held = r.svc.held_for_probe;
  while (permit.hold && r.svc.clock.now() < r.request_deadline) {
    // Registered before the board is asked again, so a report in between is not lost.
    const auto spot = held.hold(host, r.down.get_executor());
    permit = r.svc.breakers.try_acquire(host, r.svc.clock.now());
    if (permit.hold) {
      r.down.release_buffers();
      co_await spot->wait(r.request_deadline);
    }
    held.release(host, spot);
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

// The breaker's first answer without a wait: true when the request may go on (its probe, if it
// is one, now held by `guard`).
bool breaker_passes(request_ctx& r, request_guard& guard, resilience::permit& permit) {
  permit = r.svc.breakers.try_acquire(r.dest.origin.host, r.svc.clock.now());
  if (permit.hold || !permit.allowed) return false;
  guard.probe = permit.probe;
  return true;
}

void record_admission(request_ctx& r, request_guard& guard, ratelimit::ticket id, duration waited) {
  guard.ticket = id;
  r.rec.queue_wait_ms += std::chrono::duration<double, std::milli>(waited).count();
  r.stats().queue_wait().observe(std::chrono::duration<double>(waited).count());
  r.stats().admitted().inc();
}

// Admission from the scheduler's first answer, `sub`: now, after a wait in the queue, or a local
// 429.
asio::awaitable<stage_result> admit(request_ctx& r, request_guard& guard, rate_gate::submitted sub,
                                    resilience::attempt_machine& m) {
  auto& svc = r.svc;
  auto res = sub.res;
  duration waited{};
  if (res.kind == rate_gate::outcome::queued) {
    const auto queued_at = svc.clock.now();
    res = co_await admit_watching(r.c, r.down, svc.gate.wait(sub));
    waited = svc.clock.now() - queued_at;
  }
  if (res.kind == rate_gate::outcome::cancelled) {
    r.stats().cancelled().inc();
    m.on_client_gone();
    co_return client_gone(r);
  }
  if (res.kind == rate_gate::outcome::rejected) {
    const auto refused = m.on_admission_refused(res.retry_after);
    co_return co_await reject_rate_limited(r, refused.delay);
  }
  record_admission(r, guard, res.id, waited);
  co_return std::nullopt;
}

// How an attempt failed without a response.
struct attempt_failure {
  bool failed = false;
  bool timed_out = false;  // no response head in time
  resilience::failure_kind kind{};
  std::string detail;
};

// A try's connection when the pool has no idle one of this loop's at hand: acquire() waits
// for one or connects. A failure is answered here or left in `failure` for after_failure.
asio::awaitable<stage_result> lease_new(request_ctx& r, connection_lease& lease, attempt_failure& failure) {
  auto& svc = r.svc;
  auto acq = co_await svc.pool.acquire(r.dest.origin, r.request_deadline);
  if (acq.conn) {
    lease.conn = std::move(acq.conn);
    co_return std::nullopt;
  }
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

// What the upstream side of a try's send_and_read_head came to: a failure for after_failure, or
// none. (The client's side, a body error or a client gone, is the caller's to answer.)
void judge_send(request_ctx& r, const head_result& hr, attempt_failure& failure) {
  switch (hr.status) {
    case send_status::ok:
    case send_status::client_body_error:
    case send_status::client_gone:
      break;
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
      r.svc.metrics.timeout_response_headers.get().inc();
      break;
  }
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
  auto again =
      co_await admit_watching(r.c, r.down, svc.gate.wait_again(guard.ticket, std::move(guard.requeued)));
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
  resilience::permit permit;
  if (breaker_passes(r, guard, permit)) co_return std::nullopt;
  co_return co_await pass_breaker(r, guard, permit);
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
  bool read_whole = false;  // deliver_whole(), else relay_through()
  time_point at{};          // when the head arrived
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
    const auto diag = auth::diagnose(status, r.method, r.npath, r.dest.origin.host,
                                     r.caller ? r.caller->info.token : auth::token_info{}, whole->body(),
                                     whole->base()[bhttp::field::www_authenticate],
                                     svc.okta_clock.now_epoch(svc.clock.wall_now()), r.rt.scopes);
    whole->set("X-Okta-Sidecar-Diagnosis", diag.reason);
    record_auth_failure(r, status, diag, diag.reason.substr(0, diag.reason.find(':')), false);
  }
  if (status < 500) {
    auto copy = shareable(status, views(whole->base()), r.head_request);
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
    shared = shareable(status, rp.fields(), r.head_request);
    std::vector<std::string_view> cc_values;
    for (const auto& [name, value] : rp.fields()) {
      if (http::iequals(name, "cache-control")) cc_values.push_back(value);
    }
    cc = cache::parse_cache_control(cc_values);
  }
  bool upstream_reusable = false;
  relay_status rs;
  bool client_keep_alive = r.keep_alive && plan.client_in_step && !r.out.client_body_failed;
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

// A response head arrived: it teaches the breaker and the scheduler, and says what comes next.
response_plan learn_from_response(request_ctx& r, request_guard& guard, const response_head& rh,
                                  const resilience::attempt_machine& m) {
  auto& svc = r.svc;
  const auto now = svc.clock.now();  // when the head arrived, for all that learns from it
  const auto& res = *rh.parser;
  response_plan plan;
  plan.status = static_cast<int>(res.status());
  // An upstream that answered before it read all of our request leaves the connection out of
  // step, and a client whose streamed body we stopped reading leaves its own out of step too.
  plan.client_in_step = !r.out.streamed || r.out.stream_parser->is_done();
  r.rec.upstream_status = plan.status;
  if (const auto id = res.find("X-Okta-Request-Id")) {
    r.rec.okta_request_id = std::string(*id);
    if (r.first_okta_request_id.empty()) r.first_okta_request_id = r.rec.okta_request_id;
  }
  r.stats().upstream_responses(plan.status).inc();
  r.stats().upstream_latency().observe(std::chrono::duration<double>(now - r.start).count());
  const auto obs = observe(r.c, r.dest.origin.host, res.fields(), now);
  plan.outcome = resilience::classify_status(plan.status);
  svc.breakers.record(r.dest.origin.host, plan.outcome, guard.probe, now);
  guard.probe = false;
  if (plan.status == 429) r.stats().upstream_429().inc();
  if (guard.ticket) {
    auto responded =
        svc.gate.on_response(guard.ticket, plan.status, obs, r.cls.per_principal, r.down.get_executor());
    plan.decision = responded.decision;
    guard.requeued = std::move(responded.parked);
    if (plan.decision.kind == ratelimit::response_kind::deliver) guard.ticket = 0;
  }
  plan.verdict = verdict_of(plan.decision.kind);
  plan.read_whole = m.must_read_whole(plan.status, plan.verdict) || plan.status == 401 || plan.status == 403;
  plan.at = now;
  return plan;
}

// The machine's `admit`: the breaker, then the scheduler. Most requests pass both at once
// (admit_now); the rest go on in admit_attempt, from the answers admit_now got.
struct first_answers {
  resilience::permit permit;
  std::optional<rate_gate::submitted> sub;  // once the breaker let the request pass
};

bool admit_now(request_ctx& r, request_guard& guard, const ratelimit::admission_request& areq,
               first_answers& first) {
  if (!breaker_passes(r, guard, first.permit)) return false;
  first.sub = r.svc.gate.submit(areq, r.down.get_executor());
  if (first.sub->res.kind != rate_gate::outcome::admitted) return false;
  record_admission(r, guard, first.sub->res.id, {});
  return true;
}

asio::awaitable<stage_result> admit_attempt(request_ctx& r, request_guard& guard,
                                            const ratelimit::admission_request& areq, first_answers first,
                                            resilience::attempt_machine& m, resilience::attempt_action& act) {
  if (!first.sub) {
    if (auto done = co_await pass_breaker(r, guard, first.permit)) co_return done;
    first.sub = r.svc.gate.submit(areq, r.down.get_executor());
  }
  if (auto done = co_await admit(r, guard, std::move(*first.sub), m)) co_return done;
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
  // A pooled connection, usually one at hand; the request written, the final response head read.
  lease.conn = r.svc.pool.take_idle(r.dest.origin, r.down.get_executor());
  if (!lease.conn) {
    if (auto done = co_await lease_new(r, lease, failure)) co_return done;
  }
  if (lease.conn) {
    lease.conn->count_request();
    const auto header_deadline =
        std::min(r.request_deadline, r.svc.clock.now() + milliseconds(r.rt.cfg.upstream.response_timeout_ms));
    if (r.out.streamed) {
      if (!co_await r.send_continue()) co_return false;
    }
    hr = co_await send_and_read_head(r.c, r.down, r.buf, *lease.conn, r.out, rh, header_deadline, r.version);
    if (hr.status == send_status::client_body_error) {
      // As in read_body: the deadline closed the client connection; the upstream one is dropped.
      if (hr.ec == beast::error::timeout) co_return body_timed_out(r);
      // The upstream saw an incomplete request on a connection we now close: it cannot act on it.
      co_return co_await r.reply(body_error(hr.ec), "could not read the request body", false);
    }
    if (hr.status == send_status::client_gone) co_return client_gone(r);
    judge_send(r, hr, failure);
  }
  // Not one conditional expression: GCC 12 mishandles temporaries of co_await operands there.
  stage_result done;
  if (failure.failed) {
    done = co_await after_failure(r, guard, lease, failure, m, act);
  } else {
    const response_plan plan = learn_from_response(r, guard, rh, m);
    if (plan.read_whole) {
      done = co_await deliver_whole(r, guard, lease, rh, hr, plan, m, act);
    } else {
      act = m.on_response(plan.status, plan.verdict, plan.decision.retry_after, true, plan.at, 0.0,
                          retry_budget_of(r.svc));
      done = co_await relay_through(r, guard, lease, rh, hr, plan);
    }
  }
  co_return done;
}

}  // namespace

asio::awaitable<bool> forward(conn_ctx& c, net::stream& down, beast::flat_buffer& buf,
                              bhttp::request_parser<bhttp::empty_body>& hp,
                              const http::request_fields& fields, const destination& dest,
                              const http::validation& valid, request_record& rec) {
  const auto owned = std::make_unique<request_ctx>(c, down, buf, dest, rec);
  request_ctx& r = *owned;
  auto& req = hp.get();
  identify(r, req, fields);
  // Each stage below is awaited only when it has something to do: a coroutine call costs about
  // 200 instructions even when it returns at once, and most requests need none of these.
  if (token_expired_locally(r)) co_return co_await reject_expired_token(r, hp.is_done());
  if (may_share(r, req, valid)) {
    if (auto done = co_await shared_read(r, fields)) co_return *done;
  }
  // `fields` views the client's fields: read before they move and lose the hop-by-hop ones.
  prepare_upstream_head(r, req, fields.has_host());
  if (valid.body.kind != http::framing_kind::none) {
    if (auto done = co_await read_body(r, hp, valid)) co_return *done;
  }

  // The client may shorten (never lengthen) how long it is willing to wait in the queue.
  duration max_wait = r.rt.scheduler.max_wait;
  if (r.client_max_wait) max_wait = std::min<duration>(max_wait, milliseconds(*r.client_max_wait));
  const ratelimit::admission_request areq{r.key,
                                          r.caller ? r.caller->info.key : 0,
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
      case resilience::next_step::admit: {
        first_answers first;
        if (admit_now(r, guard, areq, first)) {
          act = m.on_admitted();
          break;
        }
        done = co_await admit_attempt(r, guard, areq, std::move(first), m, act);
        break;
      }
      case resilience::next_step::send:
        done = co_await send_attempt(r, guard, m, act);
        break;
      case resilience::next_step::backoff:
        r.down.release_buffers();
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

}  // namespace okta_sidecar::proxy::detail
