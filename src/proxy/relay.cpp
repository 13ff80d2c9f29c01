#include "relay.hpp"

#include <algorithm>
#include <boost/asio/write.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>
#include <charconv>
#include <chrono>
#include <tuple>

#include "okta_sidecar/http/hop_by_hop.hpp"
#include "okta_sidecar/http/request_validator.hpp"

namespace okta_sidecar::proxy::detail {

namespace {

constexpr std::size_t small_body_limit = 256 * 1024;  // 401/403/429 bodies we read whole

// A message head as one contiguous string, the way it goes on the wire. Beast's serializer
// hands the kernel one iovec per field piece, and a TLS stream gathers only a bounded number of
// small pieces into one record: copying a few hundred bytes is cheaper than either.
// append_head's `then` is how many bytes the caller appends after the head: the string grows
// once, to the head's size (fields_size and the first line) plus those.
std::size_t fields_size(const bhttp::fields& fields) {
  std::size_t n = 2;
  for (const auto& f : fields) n += f.name_string().size() + f.value().size() + 4;
  return n;
}

// The field lines and the empty line that ends a head.
void append_fields(std::string& out, const bhttp::fields& fields) {
  for (const auto& f : fields) {
    out += f.name_string();
    out += ": ";
    out += f.value();
    out += "\r\n";
  }
  out += "\r\n";
}

void append_head(std::string& out, const bhttp::request_header<>& h, std::size_t then = 0) {
  out.reserve(out.size() + h.method_string().size() + h.target().size() + 11 + fields_size(h) + then);
  out += h.method_string();
  out += ' ';
  out += h.target();
  out += h.version() == 10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n";
  append_fields(out, h);
}

void append_head(std::string& out, const bhttp::response_header<>& h, std::size_t then = 0) {
  const auto given = h.reason();
  const auto reason = given.empty() ? bhttp::obsolete_reason(h.result()) : given;
  char code[16];
  const auto [end, ec] = std::to_chars(code, code + sizeof code, h.result_int());
  const std::string_view status(code, static_cast<std::size_t>(end - code));
  out.reserve(out.size() + 9 + status.size() + 1 + reason.size() + 2 + fields_size(h) + then);
  out += h.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  out += status;
  out += ' ';
  out += reason;
  out += "\r\n";
  append_fields(out, h);
}

// Reads a response head into `p` as bhttp::async_read_header does, but parses what is buffered
// and takes what the socket holds now without an operation: one waits only for bytes that have
// not come yet.
asio::awaitable<boost::system::error_code> read_header(net::stream& s, beast::flat_buffer& buf,
                                                       bhttp::response_parser<bhttp::empty_body>& p) {
  for (;;) {
    boost::system::error_code ec;
    if (buf.size() > 0) {
      buf.consume(p.put(buf.data(), ec));
      if (p.is_header_done()) co_return boost::system::error_code{};
      if (ec != bhttp::error::need_more) co_return ec;
    }
    const std::size_t room = std::min<std::size_t>(buf.max_size() - buf.size(), 64 * 1024);
    if (room == 0) co_return bhttp::error::buffer_overflow;
    std::size_t n = s.read_now(buf.prepare(room), ec);
    if (ec == asio::error::would_block)
      std::tie(ec, n) = co_await s.async_read_some_after_empty(buf.prepare(room), use_tuple);
    if (ec == asio::error::eof)
      co_return p.got_some() ? bhttp::error::partial_message : bhttp::error::end_of_stream;
    if (ec) co_return ec;
    buf.commit(n);
  }
}

// Feeds the parser the body bytes already buffered, as far as its body buffer takes them.
// need_more (a chunk header cut short) is no error: a read brings the rest.
template <class Parser>
boost::system::error_code parse_buffered(Parser& p, beast::flat_buffer& buf) {
  boost::system::error_code ec;
  while (buf.size() > 0 && !p.is_done() && p.get().body().size > 0) {
    const std::size_t used = p.put(buf.data(), ec);
    buf.consume(used);
    if (ec || used == 0) break;
  }
  return ec == bhttp::error::need_more ? boost::system::error_code{} : ec;
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
  relay_buffer chunk;
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

}  // namespace

void strip_hop_by_hop(bhttp::fields& f) {
  http::connection_options listed;
  for (const auto& field : f) {
    if (field.name() == bhttp::field::connection) listed.add(field.value());
  }
  if (listed.overflow()) {
    for (const auto& name : http::hop_by_hop_names(views(f))) f.erase(name);
    return;
  }
  // The names Connection lists point into its values: those fields go first, the fixed ones
  // (Connection among them) after.
  if (!listed.empty()) {
    for (auto it = f.begin(); it != f.end();)
      it = listed.lists(it->name_string()) ? f.erase(it) : std::next(it);
  }
  for (auto it = f.begin(); it != f.end();) {
    it = http::is_fixed_hop_by_hop(it->name_string()) ? f.erase(it) : std::next(it);
  }
}

asio::awaitable<head_result> send_and_read_head(conn_ctx& c, net::stream& down, beast::flat_buffer& down_buf,
                                                upstream::connection& conn, outgoing& out, response_head& rh,
                                                time_point header_deadline, unsigned client_version) {
  auto& up = conn.stream();
  const auto idle = milliseconds(c.rt->cfg.upstream.idle_timeout_ms);
  head_result r;
  if (!out.streamed) {
    // Framed by Content-Length (or bodiless): the message goes out exactly as it is held.
    std::string wire;
    append_head(wire, out.head_and_body.base(), out.head_and_body.body().size());
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
    const auto ec = co_await read_header(up, conn.buffer(), rp);
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
  // The first piece of a Content-Length body is read straight behind the head, into the one
  // buffer that goes out first (all of a small body); later pieces pass through a relay_buffer.
  std::size_t first_room = 0;
  std::string wire;
  // (The serializer is on the heap: this coroutine's frame stays small enough to be recycled.)
  std::unique_ptr<bhttp::response_serializer<bhttp::buffer_body>> sr;
  if (passthrough) {
    if (body)
      first_room = static_cast<std::size_t>(std::min<std::uint64_t>(*p.content_length(), relay_chunk));
    append_head(wire, res.base(), first_room);
  } else {
    sr = std::make_unique<bhttp::response_serializer<bhttp::buffer_body>>(res);
  }
  const std::size_t head_size = wire.size();
  std::optional<relay_buffer> chunk;
  int final_writes = 0;  // a finished parser needs one empty write to end the serializer
  for (bool first = true;; first = false) {
    const bool reading = body && !p.is_done();
    char* piece_data = nullptr;
    std::size_t piece = 0;
    if (reading) {
      std::size_t room = relay_chunk;
      if (first && passthrough) {
        room = first_room;
        wire.resize(head_size + room);
        piece_data = wire.data() + head_size;
      } else {
        if (!chunk) chunk.emplace();
        piece_data = chunk->data();
      }
      res.body().data = piece_data;
      res.body().size = room;
      // What the upstream sent with the head (a small body, all of it) is parsed here; a read
      // operation only waits for what has not come yet.
      boost::system::error_code rec_ec = parse_buffered(p, conn.buffer());
      if (!rec_ec && !p.is_done() && res.body().size > 0) {
        up.expires_after(idle);
        std::tie(rec_ec, std::ignore) = co_await bhttp::async_read(up, conn.buffer(), p, use_tuple);
      }
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
      piece = room - res.body().size;
      // A copy for coalesced followers and the cache, given up once it outgrows the limit.
      if (capture && capture->size() + piece > capture_limit) capture.reset();
      if (capture) capture->append(piece_data, piece);
    }
    down.expires_after(idle);
    boost::system::error_code wec;
    std::size_t wn = 0;
    if (!passthrough) {
      res.body().data = piece_data;
      res.body().size = piece;
      res.body().more = !p.is_done();
      std::tie(wec, wn) = co_await bhttp::async_write(down, *sr, use_tuple);
      if (wec == bhttp::error::need_buffer) wec = {};
    } else if (first) {
      wire.resize(head_size + piece);
      std::tie(wec, wn) = co_await asio::async_write(down, asio::buffer(wire), use_tuple);
    } else {
      std::tie(wec, wn) = co_await asio::async_write(down, asio::buffer(piece_data, piece), use_tuple);
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
  append_head(wire, res.base(), head_request ? 0 : res.body().size());
  if (!head_request) wire += res.body();
  auto [ec, n] = co_await asio::async_write(down, asio::buffer(wire), use_tuple);
  rec.bytes_out += head_request ? 0 : res.body().size();
  ok = !ec;
}

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

}  // namespace okta_sidecar::proxy::detail
