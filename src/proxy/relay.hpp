#pragma once
// The upstream request and its response: writing the request (a held body, or one streamed
// from the client), reading the response head, relaying the response to the client (streamed,
// or read whole and sent in one piece), and answers from a shared response.
// Includes context.hpp only (the layers are listed in session.cpp).
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/system/error_code.hpp>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "context.hpp"
#include "okta_sidecar/proxy/response_reader.hpp"
#include "okta_sidecar/proxy/shared_reads.hpp"

namespace okta_sidecar::proxy::detail {

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

// The reader of the upstream's response; a fresh one for each interim (1xx) response.
struct response_head {
  std::uint32_t header_limit = 0;
  bool head_request = false;
  std::optional<response_reader> parser;

  response_reader& fresh() {
    parser.emplace();
    parser->header_limit(header_limit);
    if (head_request) parser->skip(true);
    return *parser;
  }
};

enum class relay_status { ok, upstream_failed, client_failed };

// Removes hop-by-hop fields (RFC 9110 §7.6.1) from a message about to be forwarded, and the
// fields named in `also` (lower-case).
void strip_hop_by_hop(bhttp::fields& f, std::span<const std::string_view> also = {});

inline bool status_has_body(unsigned status) {
  return !(status / 100 == 1 || status == 204 || status == 304);
}

// Writes the request (relaying a streamed body from the client) and reads the final response
// head, relaying interim ones to the client (RFC 9110 §15.2).
asio::awaitable<head_result> send_and_read_head(conn_ctx& c, net::stream& down, beast::flat_buffer& down_buf,
                                                upstream::connection& conn, outgoing& out, response_head& rh,
                                                time_point header_deadline, unsigned client_version);

// Reads a whole (small) response body: 429s we absorb and 401/403s we diagnose.
asio::awaitable<std::optional<bhttp::response<bhttp::string_body>>> read_small_body(
    conn_ctx& c, upstream::connection& conn, response_reader& rp, bool& reusable);

// Streams the response to the client as it arrives (RFC 9112 framing re-applied by us).
// `keep_alive` comes back false when the body's end is the connection's close (HTTP/1.0).
asio::awaitable<relay_status> relay_response(conn_ctx& c, net::stream& down, upstream::connection& conn,
                                             response_reader& rp, bool head_request, bool& keep_alive,
                                             unsigned version, request_record& rec, bool& upstream_reusable,
                                             std::optional<std::string>& capture, std::size_t capture_limit);

// Sends a response read whole: its head and body in one write; `ok` says whether it went out.
asio::awaitable<void> send_buffered(conn_ctx& c, net::stream& down, bhttp::response<bhttp::string_body>& res,
                                    bool head_request, bool keep_alive, unsigned version, request_record& rec,
                                    bool& ok);

// A response's end-to-end fields, as coalesced followers and the cache get them. The framing is
// re-applied when they are sent; a HEAD answer keeps its Content-Length (it describes the GET).
shared_response shareable(int status, std::span<const http::header_view> fields, bool head_request);

// Answers from a shared response: a coalesced leader's (`how` = "coalesced") or the cache's
// ("hit", or "stale" while Okta cannot answer), with an Age header for cached ones.
asio::awaitable<bool> send_shared(conn_ctx& c, net::stream& down, const shared_response& sr,
                                  std::optional<duration> age, std::string_view how, bool head_request,
                                  bool keep_alive, unsigned version, request_record& rec);

}  // namespace okta_sidecar::proxy::detail
