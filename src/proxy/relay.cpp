#include "relay.hpp"

#include <algorithm>
#include <array>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/container/small_vector.hpp>
#include <charconv>
#include <chrono>
#include <cstring>
#include <span>
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

// Copies `s` to `w` and moves past it. (An empty view may have no data: memcpy must not see it.)
void put(char*& w, std::string_view s) {
  if (s.empty()) return;
  std::memcpy(w, s.data(), s.size());
  w += s.size();
}

// One field line.
void put_field(char*& w, std::string_view name, std::string_view value) {
  put(w, name);
  put(w, ": ");
  put(w, value);
  put(w, "\r\n");
}

// The field lines and the empty line that ends a head, copied straight into the room made for
// them (one append each costs more than the copy). `size` is fields_size(fields).
void append_fields(std::string& out, const bhttp::fields& fields, std::size_t size) {
  const std::size_t at = out.size();
  out.resize(at + size);
  char* w = out.data() + at;
  for (const auto& f : fields) put_field(w, f.name_string(), f.value());
  put(w, "\r\n");
}

void append_head(std::string& out, const bhttp::request_header<>& h, std::size_t then = 0) {
  const std::size_t fields = fields_size(h);
  out.reserve(out.size() + h.method_string().size() + h.target().size() + 11 + fields + then);
  out += h.method_string();
  out += ' ';
  out += h.target();
  out += h.version() == 10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n";
  append_fields(out, h, fields);
}

// The status line, with room reserved for `more` bytes after it. An empty reason phrase (it is
// optional) is sent as the status code's usual one.
void append_status_line(std::string& out, unsigned version, unsigned status, std::string_view reason,
                        std::size_t more) {
  if (reason.empty()) reason = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
  char code[16];
  const auto [end, ec] = std::to_chars(code, code + sizeof code, status);
  out.reserve(out.size() + 9 + static_cast<std::size_t>(end - code) + 1 + reason.size() + 2 + more);
  out += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  out.append(code, end);
  out += ' ';
  out += reason;
  out += "\r\n";
}

void append_head(std::string& out, const bhttp::response_header<>& h, std::size_t then = 0) {
  const std::size_t fields = fields_size(h);
  append_status_line(out, h.version(), h.result_int(), h.reason(), fields + then);
  append_fields(out, h, fields);
}

// The head of a relayed response: the status line in `version`, the end-to-end fields in the
// order received (hop-by-hop ones dropped, RFC 9110 §7.6.1), then `framing`: the
// Transfer-Encoding and Connection lines this hop decides. `then` as for append_head.
void append_head(std::string& out, const response_reader& p, unsigned version, std::string_view framing,
                 std::size_t then = 0) {
  const http::hop_by_hop_set hop(p.fields());
  std::size_t lines = framing.size() + 2;
  for (const auto& [name, value] : p.fields()) lines += name.size() + value.size() + 4;
  append_status_line(out, version, p.status(), p.reason(), lines + then);
  const std::size_t at = out.size();
  out.resize(at + lines);
  char* w = out.data() + at;
  for (const auto& [name, value] : p.fields()) {
    if (!hop.contains(name)) put_field(w, name, value);
  }
  put(w, framing);
  put(w, "\r\n");
  out.resize(static_cast<std::size_t>(w - out.data()));  // less the hop-by-hop lines
}

// How much the next read from the upstream may add to its connection's buffer.
std::size_t upstream_room(const beast::flat_buffer& buf) {
  return std::min<std::size_t>(buf.max_size() - buf.size(), 64 * 1024);
}

// The upstream closed before a response head was complete.
boost::system::error_code closed_before_head(const response_reader& p) {
  return p.got_some() ? bhttp::error::partial_message : bhttp::error::end_of_stream;
}

// Reads a response head into `p` as bhttp::async_read_header does, as far as it can without a
// wait: parses what is buffered and takes what the socket holds now. True when it is done
// (`ec` says how), false when the rest has not come yet.
bool header_now(net::stream& s, beast::flat_buffer& buf, response_reader& p, boost::system::error_code& ec) {
  for (;;) {
    ec = {};
    if (buf.size() > 0) {
      buf.consume(p.put(buf.data(), ec));
      if (p.is_header_done() || ec != bhttp::error::need_more) return true;
    }
    const std::size_t room = upstream_room(buf);
    if (room == 0) {
      ec = bhttp::error::buffer_overflow;
      return true;
    }
    const std::size_t n = s.read_now(buf.prepare(room), ec);
    if (ec == asio::error::would_block) return false;
    if (ec == asio::error::eof) ec = closed_before_head(p);
    if (ec) return true;
    buf.commit(n);
  }
}

// The rest of a head header_now() could not finish: waits for its bytes.
asio::awaitable<boost::system::error_code> read_header(net::stream& s, beast::flat_buffer& buf,
                                                       response_reader& p) {
  boost::system::error_code ec;
  while (!header_now(s, buf, p, ec)) {
    auto [rec, n] = co_await s.async_read_some_after_empty(buf.prepare(upstream_room(buf)), use_tuple);
    if (rec == asio::error::eof) co_return closed_before_head(p);
    if (rec) co_return rec;
    buf.commit(n);
  }
  co_return ec;
}

// Feeds the reader the body bytes already buffered, as far as its body buffer takes them.
// need_more (a chunk header cut short) is no error: a read brings the rest.
boost::system::error_code parse_buffered(response_reader& p, beast::flat_buffer& buf) {
  boost::system::error_code ec;
  while (buf.size() > 0 && !p.is_done() && !p.needs_buffer()) {
    const std::size_t used = p.put(buf.data(), ec);
    buf.consume(used);
    if (ec || used == 0) break;
  }
  return ec == bhttp::error::need_more ? boost::system::error_code{} : ec;
}

// Reads from the upstream and feeds `p` until its message is done, its body buffer is full
// (need_buffer) or it fails; what is buffered already is parsed first.
asio::awaitable<boost::system::error_code> read_more(net::stream& s, beast::flat_buffer& buf,
                                                     response_reader& p) {
  for (;;) {
    boost::system::error_code ec = parse_buffered(p, buf);
    if (ec || p.is_done()) co_return ec;  // need_buffer among them
    if (p.needs_buffer()) co_return bhttp::error::need_buffer;
    const std::size_t room = upstream_room(buf);
    if (room == 0) co_return bhttp::error::buffer_overflow;
    auto [rec, n] = co_await s.async_read_some(buf.prepare(room), use_tuple);
    if (rec == asio::error::eof) {
      p.put_eof(ec);  // the end of a body delimited by the close, else a truncation
      co_return ec;
    }
    if (rec) co_return rec;
    buf.commit(n);
  }
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

void strip_hop_by_hop(bhttp::fields& f, std::span<const std::string_view> also) {
  const auto v = views(f);
  const http::hop_by_hop_set hop(v);
  const auto dropped = [&](std::string_view name) {
    if (hop.contains(name)) return true;
    for (const auto a : also) {
      if (http::iequals(name, a)) return true;
    }
    return false;
  };
  // Decided for every field before any goes: the listed names point into Connection's value.
  boost::container::small_vector<bhttp::fields::const_iterator, 8> gone;
  for (auto it = f.begin(); it != f.end(); ++it) {
    if (dropped(it->name_string())) gone.push_back(it);
  }
  for (const auto& it : gone) f.erase(it);
}

asio::awaitable<head_result> send_and_read_head(conn_ctx& c, net::stream& down, beast::flat_buffer& down_buf,
                                                upstream::connection& conn, outgoing& out, response_head& rh,
                                                time_point header_deadline, unsigned client_version) {
  auto& up = conn.stream();
  const auto idle = milliseconds(c.rt->cfg.upstream.idle_timeout_ms);
  head_result r;
  if (!out.streamed) {
    // Framed by Content-Length (or bodiless): the message goes out exactly as it is held.
    net::spare<std::string> held;
    auto& wire = *held;
    append_head(wire, out.head_and_body.base(), out.head_and_body.body().size());
    wire += out.head_and_body.body();
    up.expires_after(idle);
    auto [ec, n] = co_await up.async_write_all(asio::buffer(wire), use_tuple);
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
    boost::system::error_code ec;
    // Usually the answer is there by now (the write's completion was posted): no coroutine.
    if (!header_now(up, conn.buffer(), rp, ec)) ec = co_await read_header(up, conn.buffer(), rp);
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
    const unsigned status = rp.status();
    if (status >= 200) co_return r;
    // We never forward Upgrade, so a 101 is a protocol violation, as is an endless 1xx stream.
    if (status == 101 || interim == max_interim_responses) {
      r.status = send_status::protocol_error;
      co_return r;
    }
    // Interim responses go to HTTP/1.1 clients only (RFC 9110 §15.2). A 100 Continue answers
    // the expectation we removed (the sidecar answers the client's Expect itself): ours to drop.
    if (status == 100 || client_version != 11) continue;
    std::string wire;
    append_head(wire, rp, 11, {});
    down.expires_after(idle);
    auto [wec, wn] = co_await down.async_write_all(asio::buffer(wire), use_tuple);
    up.expires_at(header_deadline);
    if (wec) {
      r.status = send_status::client_gone;
      co_return r;
    }
  }
}

asio::awaitable<std::optional<bhttp::response<bhttp::string_body>>> read_small_body(
    conn_ctx& c, upstream::connection& conn, response_reader& rp, bool& reusable) {
  auto& up = conn.stream();
  std::string body;
  rp.body_to(body, small_body_limit);
  up.expires_after(milliseconds(c.rt->cfg.upstream.idle_timeout_ms));
  const auto ec = co_await read_more(up, conn.buffer(), rp);
  reusable = false;
  if (ec) co_return std::nullopt;
  reusable = reusable_after(c, rp, conn);
  // The rare whole response (a 429 to absorb, a 401 to diagnose) as a Beast message, to edit.
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(rp.status()), rp.version()};
  res.reason(rp.reason());
  for (const auto& [name, value] : rp.fields()) res.insert(name, value);
  res.body() = std::move(body);
  co_return res;
}

asio::awaitable<relay_status> relay_response(conn_ctx& c, net::stream& down, upstream::connection& conn,
                                             response_reader& p, bool head_request, bool& keep_alive,
                                             unsigned version, request_record& rec, bool& upstream_reusable,
                                             std::optional<std::string>& capture, std::size_t capture_limit) {
  auto& up = conn.stream();
  const auto idle = milliseconds(c.rt->cfg.upstream.idle_timeout_ms);
  const bool has_length = p.content_length().has_value();
  const bool body = !head_request && status_has_body(p.status());
  // Content-Length framing (or no body) passes through unchanged. Otherwise we re-frame the
  // body: chunked for an HTTP/1.1 client, the close for an HTTP/1.0 one.
  const bool passthrough = !body || (has_length && !p.chunked());
  const bool chunked_out = !passthrough && version == 11;
  if (!passthrough && !chunked_out) keep_alive = false;
  std::string_view framing;
  if (version == 10) {
    framing = keep_alive ? "Connection: keep-alive\r\n" : "";
  } else if (chunked_out) {
    framing =
        keep_alive ? "Transfer-Encoding: chunked\r\n" : "Transfer-Encoding: chunked\r\nConnection: close\r\n";
  } else {
    framing = keep_alive ? "" : "Connection: close\r\n";
  }
  // The head goes out with the first piece of the body, so nothing reaches the client before
  // that piece did reach us: a response that fails at once can still be answered 502. The
  // first piece of a Content-Length body is read straight behind the head, into the one buffer
  // that goes out first (all of a small body); later pieces pass through a relay_buffer.
  std::size_t first_room = 0;
  if (passthrough && body)
    first_room = static_cast<std::size_t>(std::min<std::uint64_t>(*p.content_length(), relay_chunk));
  net::spare<std::string> held;
  auto& wire = *held;
  append_head(wire, p, version == 10 ? 10 : 11, framing, first_room);
  const std::size_t head_size = wire.size();
  std::optional<relay_buffer> chunk;
  for (bool first = true;; first = false) {
    char* piece_data = nullptr;
    std::size_t piece = 0;
    if (body && !p.is_done()) {
      std::size_t room = relay_chunk;
      if (first && passthrough) {
        room = first_room;
        wire.resize(head_size + room);
        piece_data = wire.data() + head_size;
      } else {
        if (!chunk) chunk.emplace();
        piece_data = chunk->data();
      }
      p.body_into(piece_data, room);
      // What the upstream sent with the head (a small body, all of it) is parsed here; a read
      // operation only waits for what has not come yet.
      boost::system::error_code rec_ec = parse_buffered(p, conn.buffer());
      if (!rec_ec && !p.is_done() && p.body_room() > 0) {
        up.expires_after(idle);
        rec_ec = co_await read_more(up, conn.buffer(), p);
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
      piece = room - p.body_room();
      // A copy for coalesced followers and the cache, given up once it outgrows the limit.
      if (capture && capture->size() + piece > capture_limit) capture.reset();
      if (capture) capture->append(piece_data, piece);
    }
    const bool last = !body || p.is_done();
    if (first && passthrough) wire.resize(head_size + piece);
    // What goes out now: the head (first time), the piece in its chunk framing if any, and the
    // last chunk once the body is done.
    std::array<asio::const_buffer, 4> out;
    std::size_t n = 0;
    if (first) out[n++] = asio::buffer(wire);
    char size_line[24];
    if (chunked_out && piece > 0) {
      auto [e, ec] = std::to_chars(size_line, size_line + 16, piece, 16);
      *e++ = '\r';
      *e++ = '\n';
      out[n++] = asio::buffer(size_line, static_cast<std::size_t>(e - size_line));
    }
    if (piece > 0 && !(first && passthrough)) out[n++] = asio::buffer(piece_data, piece);
    if (chunked_out) {
      const std::string_view tail = piece > 0 ? (last ? "\r\n0\r\n\r\n" : "\r\n") : (last ? "0\r\n\r\n" : "");
      if (!tail.empty()) out[n++] = asio::buffer(tail.data(), tail.size());
    }
    if (n > 0) {
      down.expires_after(idle);
      auto [wec, wn] = co_await down.async_write_all(std::span(out.data(), n), use_tuple);
      rec.bytes_out += wn;
      if (wec) co_return relay_status::client_failed;
    }
    if (last) break;
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
  net::spare<std::string> held;
  auto& wire = *held;
  append_head(wire, res.base(), head_request ? 0 : res.body().size());
  if (!head_request) wire += res.body();
  auto [ec, n] = co_await down.async_write_all(asio::buffer(wire), use_tuple);
  rec.bytes_out += head_request ? 0 : res.body().size();
  ok = !ec;
}

shared_response shareable(int status, std::span<const http::header_view> fields, bool head_request) {
  shared_response out;
  out.status = status;
  for (const auto& [name, value] : fields) {
    if (http::is_fixed_hop_by_hop(name) || (!head_request && http::iequals(name, "content-length"))) continue;
    out.fields.emplace_back(std::string(name), std::string(value));
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
